"""Bad inputs to the library, one row each: the call, the InterpError it must raise, and what the
message must say (the problem, the valid values, the fix)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

import interp
from interp import Replace, Zero
from interp.activations.errors import ActivationsError
from interp.activations.selection import SpanMean
from interp.cells import Cell
from interp.errors import InterpError, InterventionError, InvalidArgumentError
from interp.lens import inspect_prompt
from interp.patching import patch_sweep
from interp.tasks import ioi_task
from interp.tokenize import TokenBatch
from tests.conftest import PROMPTS

Case = tuple[str, Callable[[interp.Model], object], type[InterpError], str]


@pytest.fixture(scope="module")
def model() -> interp.Model:
    return interp.load_model("tiny-llama")


def _sweep(**selection: object) -> Callable[[interp.Model], object]:
    def run(model: interp.Model) -> object:
        sweep = str(selection.pop("sweep", "resid_pre"))
        return patch_sweep(model, ioi_task(model, n=2), sweep, **selection)

    return run


SELECTORS: list[Case] = [
    ("sweep position past the end", _sweep(positions=[100]), InterventionError,
     r"position \[100\] out of range for sweep 'resid_pre'.*valid: 0\.\.\d+, or -\d+\.\.-1"),
    ("sweep position before the start", _sweep(positions=[-100]), InterventionError,
     r"position \[-100\] out of range"),
    ("sweep float layer", _sweep(layers=[1.9]), InterventionError, r"layer 1\.9 .*not an integer"),
    ("sweep bool layer", _sweep(layers=[True]), InterventionError, r"layer True .*bool"),
    ("sweep layer past the end", _sweep(layers=[3]), InterventionError, r"layer \[3\] out of range.*valid: 0\.\.2\)"),
    ("sweep negative head", _sweep(sweep="head_z", heads=[-1]), InterventionError, r"head \[-1\] out of range.*0\.\.3\)"),
    ("heads on a resid sweep", _sweep(heads=[0]), InterventionError, r"'resid_pre' has axes \['layer', 'pos'\].*cannot select \['heads'\]"),
    ("neurons on head_z", _sweep(sweep="head_z", neurons=[0]), InterventionError, r"cannot select \['neurons'\]"),
    ("positions on head_z", _sweep(sweep="head_z", positions=[0]), InterventionError, r"cannot select \['positions'\].*_by_pos"),
    ("float position in Zero", lambda m: Zero(site="blocks.0.hook_resid_pre", positions=[1.7]), InterventionError,
     r"positions 1\.7 of zero at 'blocks\.0\.hook_resid_pre' is not an integer"),
    ("bool head in Zero", lambda m: Zero(site="blocks.0.attn.hook_z", heads=[True]), InterventionError, r"heads True .*bool"),
    ("float row in Zero", lambda m: Zero(site="blocks.0.hook_resid_pre", rows=[0.0]), InterventionError, r"rows 0\.0 .*not an integer"),
    ("lone int as positions", lambda m: Zero(site="blocks.0.hook_resid_pre", positions=3), InterventionError,
     r"must be a list of integers"),
    ("float capture position", lambda m: m.run_with_cache(PROMPTS[0], sites=["logits"], positions=[0.9]), InterventionError,
     r"positions 0\.9 to capture is not an integer"),
    ("capture position past the end", lambda m: m.run_with_cache(PROMPTS[0], sites=["logits"], positions=[-99]),
     InterventionError, r"positions \[-99\] out of range .*valid: 0\.\.\d+, or -\d+\.\.-1"),
    ("float generation position", lambda m: m.generate(PROMPTS[0], [Zero(site="blocks.0.hook_resid_pre", positions=[np.float32(1)])], max_new_tokens=1),
     InterventionError, r"not an integer"),
    ("float cell position", lambda m: Cell(site="blocks.0.hook_resid_pre", positions=(1.5,)), InterventionError,
     r"positions 1\.5 of cell .*not an integer"),
    ("negative cell head", lambda m: Cell(site="blocks.0.attn.hook_z", heads=(-1,)), InterventionError, r"heads \[-1\] .*negative"),
    ("lens float layer", lambda m: inspect_prompt(m, PROMPTS[0], layers=[0.5]), InvalidArgumentError, r"layers 0\.5 .*not an integer"),
    ("lens layer past the end", lambda m: inspect_prompt(m, PROMPTS[0], layers=[3]), InvalidArgumentError, r"layers \[3\] out of range.*0\.\.2\)"),
    ("float span bound", lambda m: SpanMean([(0.5, 2)]), ActivationsError, r"span bounds 0\.5 .*not an integer"),
]

SITE = "blocks.1.hook_resid_pre"


def _replace(fn: Callable) -> Callable[[interp.Model], object]:
    return lambda m: m.run(PROMPTS[0], [Replace(site=SITE, fn=fn)])


REPLACE: list[Case] = [
    ("replace returns None", _replace(lambda v, n: None), InterventionError,
     r"Replace at 'blocks\.1\.hook_resid_pre': function .*<lambda> returned NoneType, not a tensor.*return v"),
    ("replace returns a list", _replace(lambda v, n: v.tolist()), InterventionError, r"returned list, not a tensor"),
    ("replace returns a wrong shape", _replace(lambda v, n: v[:, :2]), InterventionError,
     r"function .*<lambda> returned shape \(1, 2, 64\), which does not broadcast to the site's shape \(1, \d+, 64\)"),
]

LIBRARY: list[Case] = [
    ("ragged list as Add vector", lambda m: interp.Add(site=SITE, vector=[[1.0, 2.0], [3.0]]), InterventionError,
     r"add at 'blocks\.1\.hook_resid_pre': vector of type list is not a tensor and cannot become one"),
    ("string as Patch source", lambda m: interp.Patch(site=SITE, source="cache"), InterventionError,
     r"source of type str is not a tensor"),
    ("float token ids", lambda m: m.run(torch.tensor([[1.0, 2.0]])), interp.TokenizationError,
     r"token ids must be an integer tensor, got dtype torch\.float32; convert with ids\.long\(\)"),
    ("float64 ids in a TokenBatch", lambda m: m.run(TokenBatch(*(torch.ones(1, 2, dtype=t) for t in (torch.float64, torch.long, torch.long)))),
     interp.TokenizationError, r"ids must be integers, got dtype torch\.float64"),
    ("token id past the vocabulary", lambda m: m.run(torch.tensor([[1, 512]])), interp.TokenizationError,
     r"token id 512 is outside the vocabulary of 'tiny-llama': ids must be 0\.\.511 \(vocab size 512"),
    ("negative token id", lambda m: m.run(torch.tensor([[-1, 2]])), interp.TokenizationError, r"token id -1 is outside the vocabulary"),
    ("prompt longer than the context", lambda m: m.run(" Mary" * 200), interp.TokenizationError,
     r"a prompt of 200 tokens is longer than the context of 'tiny-llama' \(128 tokens, max_position_embeddings\)"),
    ("lens prompt longer than the context", lambda m: inspect_prompt(m, " Mary" * 200), interp.TokenizationError,
     r"a prompt of 200 tokens is longer than the context"),
    ("generation past the context", lambda m: m.generate(" Mary" * 100, max_new_tokens=50), interp.GenerationError,
     r"a prompt of 100 tokens plus max_new_tokens=50 exceeds the context of 'tiny-llama' \(128 tokens\); ask for at most 28"),
    ("unknown dtype string", lambda m: interp.load_model("tiny-llama", dtype="float128"), InvalidArgumentError,
     r"dtype 'float128' is not a model dtype; use one of \['float32', 'float64', 'bfloat16', 'float16'\]"),
    ("integer dtype", lambda m: interp.load_model("tiny-llama", dtype=torch.int64), InvalidArgumentError, r"dtype torch\.int64 is not a model dtype"),
    ("gpu is not a device name", lambda m: interp.load_model("tiny-llama", device="gpu"), InvalidArgumentError,
     r"device 'gpu' is not a device name .*a GPU is 'cuda'.*available devices: cpu"),
    ("prepend_bos not a bool", lambda m: interp.load_model("tiny-llama", prepend_bos="yes"), InvalidArgumentError,
     r"prepend_bos='yes' is not a bool"),
]
if not torch.cuda.is_available():
    LIBRARY.append(("cuda without CUDA", lambda m: interp.load_model("tiny-llama", device="cuda"), InvalidArgumentError,
                    r"^device 'cuda' is not available here; available devices: cpu"))

CASES: list[Case] = SELECTORS + REPLACE + LIBRARY


@pytest.mark.parametrize(("name", "call", "error", "pattern"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(
    model: interp.Model, name: str, call: Callable[[interp.Model], object], error: type[InterpError], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        call(model)
