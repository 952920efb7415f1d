"""otel_ai.semconv, docs/semconv.md and the product contract stay in step."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from otel_ai import semconv

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "semconv.md").read_text(encoding="utf-8")
# the contract travels beside the project; in a clone of the project alone it may be absent
SPEC = next((p for p in (ROOT / "SPEC.md", ROOT.parent / "shared" / "SPEC.md") if p.exists()), None)

DOTTED = re.compile(
    r"`((?:ai|gen_ai|hw|system|process|event|exception|error|log|cloud|container|service|telemetry)\.[a-z0-9_.{}]+)`"
)


def _names() -> dict[str, str]:
    return {k: v for k, v in vars(semconv).items() if k.isupper() and isinstance(v, str)}


def test_every_dotted_name_in_semconv_is_documented() -> None:
    missing = sorted(v for v in _names().values() if "." in v and f"`{v}" not in DOC)
    assert not missing, f"document these in docs/semconv.md: {missing}"


@pytest.mark.skipif(SPEC is None, reason="the product contract is not beside this checkout")
def test_every_name_of_the_contract_is_defined_once_in_semconv() -> None:
    assert SPEC is not None
    contract = set(DOTTED.findall(SPEC.read_text(encoding="utf-8")))
    defined = set(_names().values())
    # names with a {placeholder} or generic families are documented as patterns
    wanted = {
        n.rstrip(".")
        for n in contract
        if "{" not in n and not n.endswith(".*") and n not in ("system.*", "process.*", "gen_ai.*")
    }
    wanted = {n for n in wanted if not n.startswith(("hw.", "system.", "process.", "gen_ai."))}
    missing = sorted(
        n for n in wanted if n not in defined and f"{n}." not in {d[: len(n) + 1] for d in defined}
    )
    assert not missing, f"define these in otel_ai/semconv.py: {missing}"


def test_no_contract_name_is_spelled_as_a_literal_outside_semconv() -> None:
    names = {v for v in _names().values() if "." in v}
    offenders = []
    for path in (ROOT / "otel_ai").rglob("*.py"):
        if path.name == "semconv.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not offenders, "use otel_ai.semconv instead of: " + ", ".join(offenders)
