"""The package's layers (docs/design.md, "Layout"): a module imports only from its own layer or below, and no
import circle exists. Imports are read with `ast` from the source, so imports inside functions count too."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vismech"

# lowest first; a module belongs to the layer of its longest matching prefix
LAYERS = (
    ("core", ("vismech", "vismech.errors", "vismech.io", "vismech.seeding", "vismech.stats", "vismech.registry",
              "vismech.config", "vismech.cost", "vismech.results", "vismech.finding", "vismech.store",
              "vismech.progress", "vismech.plots", "vismech.loggers", "vismech.generations",
              "vismech.verification_file", "vismech.code_digest", "vismech.tradeoff")),
    ("models", ("vismech.subject", "vismech.edit", "vismech.sampling", "vismech.models")),
    ("datasets", ("vismech.datasets",)),
    # the zoo's recipes train on the mini world, so they sit above it; nothing below imports them
    ("zoo", ("vismech.zoo",)),
    ("methods and metrics", ("vismech.method", "vismech.methods", "vismech.metrics")),
    ("benchmarks", ("vismech.benchmarks",)),
    ("runs and board", ("vismech.runner", "vismech.trials", "vismech.summary", "vismech.verify",
                        "vismech.leaderboard", "vismech.site", "vismech.deviations", "vismech.cli")),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The vismech modules `name` imports (at the top or inside a function), resolved to module names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from pkg import sub` imports the submodule; `from mod import name` the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def layer_of(name: str) -> int:
    best = (-1, -1)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                best = max(best, (len(prefix), index))
    if best[0] < 0:
        raise AssertionError(f"module {name} has no layer: add it to LAYERS")
    return best[1]


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each a circle of imports."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle():
    assert cycles(graph()) == []


def test_no_import_from_a_lower_layer_to_a_higher_one():
    edges = graph()
    upward = sorted(f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
                    for a, targets in edges.items() for b in targets
                    if layer_of(b) > layer_of(a))
    assert upward == []


def test_the_checker_sees_circles_and_function_level_imports(tmp_path):
    """The reader resolves relative imports inside functions, and the circle search finds a two-module circle."""
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from ..runner import progress_bar\n    from . import leaderboard\n")
    known = {"vismech.runner", "vismech.leaderboard", "vismech.methods.mod"}
    assert imports("vismech.methods.mod", source, known) == {"vismech.runner"}
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert layer_of("vismech.metrics.judges.paper") > layer_of("vismech.zoo.judge_world") > layer_of("vismech.sampling")

