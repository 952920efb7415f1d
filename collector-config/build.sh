#!/usr/bin/env bash
# Build the real binaries the pipelines and their tests run, with Go from the module proxy:
#
#   collector-config/build.sh [collector|jaeger|all]     (default: all)
#   collector-config/build.sh check [collector|jaeger]   exit 0 when the binaries (default:
#                                                        both) are built and up to date
#
#   otelcol-ai  the project's collector distribution: the OpenTelemetry Collector Builder
#               (ocb) at OCB_VERSION turns otelcol-ai.manifest.yaml into a Go program
#   jaeger      Jaeger v2 (all-in-one: OTLP in, query API out), the version pinned in
#               tools/go.mod (with its go.sum)
#
# Both land in $OTEL_AI_BIN_DIR (default ~/.cache/otel-ai/bin), outside the repository. A
# binary is rebuilt only when what it is built from changed: a stamp beside it holds the
# hash of the manifest and OCB_VERSION (or of tools/go.mod and go.sum). The Go caches
# are the usual ones (GOMODCACHE ~/go/pkg/mod, GOCACHE ~/.cache/go-build), so a second
# checkout or CI on the same machine reuses the downloads and the compiled packages.
# Prints the paths of the binaries on the last lines of its output.
set -euo pipefail

OCB_VERSION=v0.161.0

here="$(cd "$(dirname "$0")" && pwd)"
what="${1:-all}"
bin_dir="${OTEL_AI_BIN_DIR:-$HOME/.cache/otel-ai/bin}"
work_root="$(dirname "$bin_dir")/build"
mkdir -p "$bin_dir" "$work_root"

if [[ "$what" != "check" ]] && ! command -v go >/dev/null 2>&1; then
  echo "build.sh: no go on PATH; install Go 1.24 or newer (the Debian package golang-go, or go.dev)" >&2
  exit 2
fi
# Small binaries, reproducible paths; the flags below add -ldflags.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath"
export CGO_ENABLED="${CGO_ENABLED:-0}"

hash_of() { { cat "$@"; echo "$OCB_VERSION"; } | sha256sum | cut -c1-16; }

fresh() { # fresh BINARY HASH: the binary exists and was built from HASH
  [[ -x "$1" && -f "$1.stamp" && "$(cat "$1.stamp")" == "$2" ]]
}

collector_hash() { hash_of "$here/otelcol-ai.manifest.yaml"; }
jaeger_hash() { hash_of "$here/tools/go.mod" "$here/tools/go.sum"; }

if [[ "$what" == "check" ]]; then
  case "${2:-all}" in
    collector) fresh "$bin_dir/otelcol-ai" "$(collector_hash)" ;;
    jaeger) fresh "$bin_dir/jaeger" "$(jaeger_hash)" ;;
    *) fresh "$bin_dir/otelcol-ai" "$(collector_hash)" && fresh "$bin_dir/jaeger" "$(jaeger_hash)" ;;
  esac
  exit
fi

# build_once NAME HASH COMPILE: runs "COMPILE TMP" to make bin/NAME unless the binary there
# is stamped with HASH already; the binary is moved into place and stamped only when the
# compile succeeded, so a broken build never passes for a fresh one.
build_once() {
  local name="$1" hash="$2" compile="$3"
  local out="$bin_dir/$name"
  if fresh "$out" "$hash"; then
    echo "$name is up to date ($hash)" >&2
    return
  fi
  local start=$SECONDS
  "$compile" "$out.tmp" "$hash"
  mv "$out.tmp" "$out"
  echo "$hash" >"$out.stamp"
  echo "build.sh: $name built in $((SECONDS - start)) s" >&2
}

compile_collector() { # compile_collector OUT HASH
  # ocb itself, once per version
  local ocb="$work_root/tools/ocb-$OCB_VERSION"
  if [[ ! -x "$ocb" ]]; then
    echo "build.sh: installing ocb $OCB_VERSION" >&2
    GOBIN="$work_root/tools/gobin" go install -ldflags='-s -w' \
      "go.opentelemetry.io/collector/cmd/builder@$OCB_VERSION"
    mv "$work_root/tools/gobin/builder" "$ocb"
  fi
  local work="$work_root/otelcol-ai"
  rm -rf "$work"
  mkdir -p "$work"
  cp "$here/otelcol-ai.manifest.yaml" "$work/manifest.yaml"
  echo "build.sh: generating and fetching otelcol-ai sources ($2)" >&2
  (cd "$work" && "$ocb" --skip-compilation --config manifest.yaml)
  echo "build.sh: compiling otelcol-ai" >&2
  (cd "$work/_build" && go build -ldflags='-s -w' -o "$1" .)
}

compile_jaeger() { # compile_jaeger OUT HASH
  echo "build.sh: compiling jaeger ($2)" >&2
  (cd "$here/tools" && go build -mod=readonly -ldflags='-s -w' -o "$1" \
    github.com/jaegertracing/jaeger/cmd/jaeger)
}

build_collector() { build_once otelcol-ai "$(collector_hash)" compile_collector; }
build_jaeger() { build_once jaeger "$(jaeger_hash)" compile_jaeger; }

case "$what" in
  collector) build_collector ;;
  jaeger) build_jaeger ;;
  all) build_collector; build_jaeger ;;
  *) echo "usage: $0 [collector|jaeger|all]" >&2; exit 2 ;;
esac
case "$what" in
  collector|all) echo "$bin_dir/otelcol-ai" ;;
esac
case "$what" in
  jaeger|all) echo "$bin_dir/jaeger" ;;
esac
