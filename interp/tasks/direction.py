"""Patching directions: which of a task's two runs is patched, and which one supplies the values.

A task defines two runs: the clean prompts, and the corrupt prompts with the task's corrupt
interventions (e.g. embedding noise). A direction names one of them the *base* run (the run that is
patched) and the other the *source* run (where patch values come from):

* ``"denoising"``: base = corrupt, source = clean; a component that restores the clean metric is
  sufficient for the behaviour;
* ``"noising"``: base = clean, source = corrupt; a component whose corruption destroys the metric
  is necessary for it.

Exact patching and every attribution method read runs and directions through these functions.
"""

from __future__ import annotations

from typing import Any, Literal

from interp.errors import InterventionError
from interp.interventions import Intervention
from interp.tokenize import TokenBatch

Direction = Literal["denoising", "noising"]
Which = Literal["clean", "corrupt"]
DIRECTIONS: tuple[Direction, ...] = ("denoising", "noising")


def check_direction(direction: str) -> None:
    """Raise unless ``direction`` is ``"denoising"`` or ``"noising"``."""
    if direction not in DIRECTIONS:
        raise InterventionError(f"direction must be 'denoising' or 'noising', got {direction!r}")


def roles(direction: Direction) -> tuple[Which, Which]:
    """(base run, source run) of a direction."""
    check_direction(direction)
    return ("corrupt", "clean") if direction == "denoising" else ("clean", "corrupt")


def check_aligned(task: Any) -> None:
    """Raise unless the task's clean and corrupt batches have the same shape (aligned positions)."""
    if tuple(task.clean.shape) != tuple(task.corrupt.shape):
        raise InterventionError(
            f"clean batch {tuple(task.clean.shape)} and corrupt batch {tuple(task.corrupt.shape)} differ in "
            "shape; patching needs aligned positions (tokenise them with model.tokenize_pairs)"
        )


def run_spec(task: Any, which: Which, device: Any = None) -> tuple[TokenBatch, tuple[Intervention, ...]]:
    """Tokens (on ``device``) and interventions of the task's clean or corrupt run."""
    check_aligned(task)
    if which == "clean":
        return task.clean.to(device), ()
    return task.corrupt.to(device), tuple(task.corrupt_interventions)
