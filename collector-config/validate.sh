#!/usr/bin/env bash
# Validate every collector config set (config-sets.txt) with the pinned collector:
# `otelcol-contrib validate --config=A --config=B ...` per set.
#
#   ./validate.sh                  fails (exit 2) when no collector can be run
#   ./validate.sh --if-available   skips quietly instead (the tests use this)
#
# The collector is, in order: $OTELCOL_BIN, `otelcol-contrib` on PATH, or the pinned image
# through docker when a docker engine answers.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
image="$(awk '$1 == "image:" {print $2}' otelcol-contrib.components.yaml)"

if [[ -n "${OTELCOL_BIN:-}" ]]; then
  run=("$OTELCOL_BIN")
elif command -v otelcol-contrib >/dev/null 2>&1; then
  run=(otelcol-contrib)
elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  run=(docker run --rm -v "$here:/etc/otelcol:ro" -w /etc/otelcol "$image")
else
  if [[ "${1:-}" == "--if-available" ]]; then
    echo "validate.sh: no otelcol-contrib and no docker engine here; skipped" >&2
    exit 0
  fi
  echo "validate.sh: need otelcol-contrib on PATH, OTELCOL_BIN, or a docker engine for $image" >&2
  exit 2
fi

failed=0
while read -r name files; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  args=()
  for f in $files; do args+=("--config=$f"); done
  if "${run[@]}" validate "${args[@]}"; then
    echo "ok      $name"
  else
    echo "FAILED  $name ($files)" >&2
    failed=1
  fi
done < config-sets.txt
exit "$failed"
