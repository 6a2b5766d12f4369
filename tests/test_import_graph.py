"""The import graph of ``interp``: dependencies point one way and nothing imports in a cycle.

Every module's imports are read from its source (module level and inside functions, skipping
``if TYPE_CHECKING:`` blocks), so a lazy import cannot hide an arrow that points the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "interp"

# Lower numbers sit below higher ones; a module may import only from its own rank or below.
RANKS: dict[str, int] = {
    "errors": 0,
    "lazy": 0,
    "sites": 1,
    "runs": 1,
    "config": 1,
    "cluster": 1,
    "indices": 1,
    "arch": 2,
    "attention": 2,
    "tokenize": 2,
    "cache": 2,
    "interventions": 2,
    "vectors": 2,
    "flops": 2,
    "cells": 2,
    "positions": 2,
    "hooks": 3,
    "model": 3,
    "models": 3,
    "generation": 3,
    "tasks": 4,
    "activations": 4,
    "lens": 4,
    "patching": 5,
    "attribution": 5,
    "steering": 5,
    "concepts": 5,
    "sae": 5,
    "backends": 5,
    "viz": 6,
    "cli": 7,
    "cli_options": 7,
    "cli_errors": 7,
    "app_cli": 7,
    "__main__": 7,
    "__init__": 7,
}
METHODS = {"patching", "attribution", "steering", "concepts", "sae"}
# method -> methods whose *public package* (``interp.<name>``, never its modules) it may use
ALLOWED_METHOD_USES = {"attribution": {"patching", "sae"}, "steering": {"patching"}}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _exists(name: str) -> bool:
    path = ROOT.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Absolute names of the ``interp`` modules (or packages) ``path`` imports."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("interp"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("interp"):
            for alias in node.names:  # ``from package import module`` imports that module
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if _exists(submodule) else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in sorted(ROOT.rglob("*.py"))}


def _top(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_package_has_a_rank() -> None:
    missing = sorted({_top(name) for name in _graph()} - set(RANKS))
    assert not missing, f"give these packages a rank in RANKS: {missing}"


def test_dependencies_point_one_way() -> None:
    wrong = []
    for module, imports in _graph().items():
        source = _top(module)
        for target_name in imports:
            target = _top(target_name)
            if target == source or source == "__init__" or module.endswith(".cli"):
                continue  # a method's ``cli`` module is part of the command line, on top of everything
            if source in METHODS and target in METHODS:
                allowed = target in ALLOWED_METHOD_USES.get(source, set()) and target_name == f"interp.{target}"
                if not allowed:
                    wrong.append(f"{module} -> {target_name} (methods use only each other's public package)")
            elif RANKS[target] > RANKS[source]:
                wrong.append(f"{module} -> {target_name} (rank {RANKS[source]} imports rank {RANKS[target]})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    graph = _graph()
    modules = set(graph)

    def resolve(name: str) -> str | None:
        return name if name in modules else None

    edges = {m: {t for t in map(resolve, imports) if t is not None and t != m} for m, imports in graph.items()}
    # A package's __init__ re-exports its modules lazily; an edge into a package is an edge into its
    # __init__ only, so cycles through re-exports show up too.
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize(
    "statement",
    [
        "from interp.attribution import load_comparison, Comparison",
        "from interp.patching import load_result, PatchingResult",
        "import interp.runs",
    ],
)
def test_reading_a_stored_result_imports_no_method(statement: str) -> None:
    import subprocess
    import sys

    heavy = ["transformers", "scipy", "plotly", "interp.model", "interp.patching.engine", "interp.attribution.compare"]
    code = f"import sys\n{statement}\nprint([m for m in {heavy!r} if m in sys.modules])"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]", f"{statement!r} imported {output.strip()}"
