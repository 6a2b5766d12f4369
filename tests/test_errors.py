"""The error contract: every error raised on purpose is an InterpError, and the messages say what to do."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

from interp.attribution.compare import run_method
from interp.attribution.ig import step_points
from interp.errors import InterpError, InvalidArgumentError
from interp.runs import RunStore
from interp.runs.errors import InvalidNameError, ManifestFieldError
from interp.runs.shards import check_index

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("interp", "app")
BUILTIN_ERRORS = {
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
}
INVARIANTS = {"AssertionError"}  # internal invariants, like assert statements
ALLOWED = {
    ("interp/lazy.py", "AttributeError"): "module __getattr__ must raise AttributeError",
    ("interp/arch/base.py", "AttributeError"): "adapter parts a family lacks, called only when its flag says it has them",
    ("interp/sae/activations.py", "NotImplementedError"): "abstract method of the activation base class",
    ("interp/vectors.py", "TypeError"): "json.dumps calls its default= hook and expects TypeError for values it cannot encode",
}


def bare_raises() -> set[tuple[str, str, int]]:
    """``(path, builtin exception, line)`` of every ``raise Builtin(...)`` under the source folders."""
    found = set()
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Raise) and node.exc is not None:
                    target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                    if isinstance(target, ast.Name) and target.id in BUILTIN_ERRORS - INVARIANTS:
                        found.add((path.relative_to(ROOT).as_posix(), target.id, node.lineno))
    return found


def test_no_bare_builtin_raises_outside_the_allow_list() -> None:
    found = bare_raises()
    unexpected = sorted(f"{path}:{line}: raise {name}" for path, name, line in found if (path, name) not in ALLOWED)
    assert not unexpected, (
        "raise an InterpError subclass (interp/errors.py, or the package's errors module) that also derives "
        "from the builtin, instead of:\n" + "\n".join(unexpected)
    )
    stale = sorted(set(ALLOWED) - {(path, name) for path, name, _ in found})
    assert not stale, f"allow-list entries with no raise left; remove them: {stale}"


def test_unknown_method_lists_the_methods() -> None:
    with pytest.raises(InvalidArgumentError, match=r"unknown method 'magic'; choose from \['atp', ") as error:
        run_method("magic", None, None, [], "logit_diff", "denoising", None)  # type: ignore[arg-type]
    assert isinstance(error.value, ValueError) and isinstance(error.value, InterpError)


def test_ig_settings_name_the_accepted_values() -> None:
    with pytest.raises(InvalidArgumentError, match="steps must be at least 1, got 0"):
        step_points(0, "midpoint")
    with pytest.raises(InvalidArgumentError, match="unknown rule 'trapezoid'; choose 'midpoint' or 'left'"):
        step_points(4, "trapezoid")  # type: ignore[arg-type]


def test_store_refusals_are_interp_errors(tmp_path: Path) -> None:
    run = RunStore(tmp_path).create("patching", {}, model="m")
    with pytest.raises(ManifestFieldError, match=r"\['id'\] cannot be changed; they are fixed when the run is created"):
        run.update_manifest(id="other")
    with pytest.raises(ManifestFieldError, match="status must be one of"):
        run.update_manifest(status="done")
    with pytest.raises(InvalidNameError, match="shard index must be a non-negative int, got -1") as error:
        check_index(-1)
    assert isinstance(error.value, ValueError)
