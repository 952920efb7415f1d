"""The import architecture of otel_ai (docs/architecture.md), checked from the source.

Every import arrow points down the layers, no import cycle, an import inside a function
only for an optional or heavy third-party dependency, every module under 600 lines, and no
room reaching into another room's private modules or names. Run as a script, it prints
every breach instead of stopping at the first.
"""

from __future__ import annotations

import ast
import functools
import shutil
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "otel_ai"
MAX_LINES = 600

# (layer, module prefixes), bottom to top: a module imports only its own layer or lower.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "otel_ai.semconv",
            "otel_ai.config",
            "otel_ai.version",
            "otel_ai._internal",
            "otel_ai.redaction",
            "otel_ai.links",
            "otel_ai.randomids",
        ),
    ),
    ("parts", ("otel_ai.export", "otel_ai.metrics", "otel_ai.artifacts", "otel_ai.read")),
    ("pipeline", ("otel_ai.export.providers", "otel_ai.pipeline", "otel_ai.propagation", "otel_ai.pools")),
    ("model", ("otel_ai.model",)),
    ("front doors", ("otel_ai.emitter", "otel_ai.watch", "otel_ai.instrumentation", "otel_ai.bootstrap")),
    ("runner", ("otel_ai.runner",)),
    ("top", ("otel_ai.cli", "otel_ai.report", "otel_ai")),
]

# Third-party modules that may be imported inside a function: optional extras, or heavy
# imports paid only when the feature is used (a child's start-up stays cheap).
LAZY_THIRD_PARTY = {"boto3", "botocore", "grpc", "pynvml", "rich", "openai", "anthropic"}
# Third-party imports a module may defer for a reason of its own: propagation (and pools) is imported
# by the start-up of every Python child of `otel-ai run`, where opentelemetry.trace would
# cost tens of milliseconds a process; it loads it only when a span context is needed.
LAZY_IN_MODULE = {
    "otel_ai.propagation": {"opentelemetry"},
    "otel_ai.pools": {"opentelemetry"},
    # on the path of `otel-ai run` before its command starts, used only where asked for
    "otel_ai.config": {"opentelemetry", "importlib"},
    "otel_ai.runner.state": {"psutil"},
}
# Modules of our own a module may load where it needs them: the OTLP delivery (transport,
# spool, protobuf: 60 ms) is loaded only by a pipeline with an endpoint, never by the
# embedded default's processes.
LAZY_LOCAL = {
    "otel_ai.export.providers": {"otel_ai.export.outbox", "otel_ai.export.spool"},
    # the wrapper delivers what dead processes spooled: loaded only when there is a spool
    "otel_ai.runner.orphans": {"otel_ai.export.spool"},
}
# Modules whose function-level imports are their purpose: the front door's PEP 562 lazy
# attributes and the start-up hook every Python child runs.
LAZY_MODULES = {"otel_ai", "otel_ai.bootstrap.site.sitecustomize"}
# Private modules of the foundation every room may use.
SHARED_PRIVATE = {"otel_ai._internal"}


@dataclass(frozen=True)
class Import:
    source: str
    target: str  # the otel_ai module imported (or the third-party top-level name)
    names: tuple[str, ...]
    line: int
    in_function: bool
    type_only: bool


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, in_function: bool, type_only: bool) -> Iterator[tuple[ast.AST, bool, bool]]:
    for child in ast.iter_child_nodes(node):
        yield child, in_function, type_only
        nested_function = in_function or isinstance(
            child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
        )
        nested_type = type_only or (isinstance(child, ast.If) and _is_type_checking(child))
        yield from _walk(child, nested_function, nested_type)


def imports(name: str, path: Path, known: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node, in_function, type_only in _walk(tree, False, False):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                if target.startswith("otel_ai"):
                    while target not in known and "." in target:
                        target = target.rsplit(".", 1)[0]
                found.append(Import(name, target, (), node.lineno, in_function, type_only))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            names = tuple(alias.name for alias in node.names)
            if target.startswith("otel_ai"):
                submodules = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
                for sub in submodules:
                    found.append(Import(name, sub, (), node.lineno, in_function, type_only))
                rest = tuple(n for n in names if f"{target}.{n}" not in known)
                if rest or not submodules:
                    while target not in known and "." in target:
                        target = target.rsplit(".", 1)[0]
                    found.append(Import(name, target, rest, node.lineno, in_function, type_only))
            else:
                found.append(Import(name, target, names, node.lineno, in_function, type_only))
    return found


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def room_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def breaches(package: Path = PACKAGE) -> dict[str, list[str]]:
    known = modules(package)
    graph: dict[str, set[str]] = defaultdict(set)
    found: dict[str, list[str]] = {"cycles": [], "upward": [], "in_function": [], "private": [], "size": []}
    for name, path in known.items():
        graph[name]
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            found["size"].append(f"{name}: {lines} lines")
        for imp in imports(name, path, known):
            local = imp.target.startswith("otel_ai")
            if imp.in_function and name not in LAZY_MODULES:
                allowed = LAZY_THIRD_PARTY | LAZY_IN_MODULE.get(name, set())
                if imp.target in LAZY_LOCAL.get(name, set()):
                    pass
                elif local or imp.target.split(".")[0] not in allowed:
                    found["in_function"].append(f"{name}:{imp.line} imports {imp.target}")
            if not local or imp.type_only or imp.target == name:
                continue
            graph[name].add(imp.target)
            if layer_of(imp.target) > layer_of(name) and not name.startswith(imp.target + "."):
                found["upward"].append(
                    f"{name}:{imp.line} ({LAYERS[layer_of(name)][0]}) imports {imp.target} "
                    f"({LAYERS[layer_of(imp.target)][0]})"
                )
            if room_of(imp.target) != room_of(name) and imp.target not in SHARED_PRIVATE:
                private = [p for p in imp.target.split(".")[1:] if p.startswith("_") and p != "__init__"]
                private += [n for n in imp.names if n.startswith("_") and not n.endswith("__")]
                if private:
                    found["private"].append(f"{name}:{imp.line} uses {imp.target} {private}")
    # a package importing its own submodules is how Python packages work; the cycle
    # check is about modules, so drop the arrows from a package __init__ to its children
    for name in list(graph):
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    found["cycles"] = [" -> ".join(cycle) for cycle in _cycles(graph)]
    return found


@functools.cache
def _package_breaches() -> dict[str, list[str]]:
    return breaches()


def test_imports_point_down_the_layers() -> None:
    assert _package_breaches()["upward"] == []


def test_no_import_cycle() -> None:
    assert _package_breaches()["cycles"] == []


def test_imports_inside_functions_only_for_optional_dependencies() -> None:
    assert _package_breaches()["in_function"] == []


def test_no_room_uses_another_rooms_private_modules() -> None:
    assert _package_breaches()["private"] == []


def test_every_module_under_600_lines() -> None:
    assert _package_breaches()["size"] == []


def test_the_checker_sees_each_kind_of_breach(tmp_path: Path) -> None:
    """The checker can fail: breaches planted in a copy of the package are reported."""
    copy = tmp_path / "otel_ai"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with (copy / "semconv.py").open("a", encoding="utf-8") as semconv:
        semconv.write("\nfrom otel_ai.cli import main\n\n\ndef _late():\n    import json\n")
        semconv.write("".join(f"\n# {n}" for n in range(MAX_LINES)))
    with (copy / "config.py").open("a", encoding="utf-8") as config:
        config.write("\nfrom otel_ai.redaction import redact\nfrom otel_ai.runner import _x\n")
    with (copy / "redaction.py").open("a", encoding="utf-8") as redaction:
        redaction.write("\nfrom otel_ai.config import Settings\n")
    found = breaches(copy)
    assert any(line.startswith("otel_ai.semconv:") and "otel_ai.cli" in line for line in found["upward"])
    assert any(line.startswith("otel_ai.semconv:") and "json" in line for line in found["in_function"])
    assert any(line.startswith("otel_ai.semconv:") for line in found["size"])
    assert any("otel_ai.config" in c and "otel_ai.redaction" in c for c in found["cycles"])
    assert any(line.startswith("otel_ai.config:") and "_x" in line for line in found["private"])


if __name__ == "__main__":
    total = 0
    for kind, lines in breaches(Path(sys.argv[1]) if len(sys.argv) > 1 else PACKAGE).items():
        for line in lines:
            print(f"{kind}: {line}")
        total += len(lines)
    print(f"{total} breaches")
    sys.exit(1 if total else 0)
