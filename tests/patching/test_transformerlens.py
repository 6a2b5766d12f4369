"""Our patching engine against TransformerLens 4.3's patching helpers on the same model and data.

TransformerLens 4 wraps the live HF module in a ``TransformerBridge`` (booted offline from the
already-built model; it needs a tokenizer loaded ``from_pretrained``, so the tiny tokenizer is saved
and reloaded) and runs one full forward per cell. Its bridge forces eager attention with a float32
softmax even for float64 models, so the two agree to about 1e-5, not to float64 precision. TL's
helpers take raw token tensors without an attention mask, so the prompts here share one length.
Booting rewires the model it is given, hence the deep copy.
"""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch
import transformer_lens.patching as tl_patching
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoTokenizer

import interp
from interp.patching import patch_sweep
from interp.tasks import PatchingTask

CLEAN = ["When Mary and John went to the store, John gave a drink to", "When Tom and Anna went to the store, Anna gave a book to"]
CORRUPT = ["When Kate and Paul went to the store, James gave a drink to", "When Sarah and Bob went to the store, Alice gave a book to"]


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-gpt2"])
def models(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    model = interp.load_model(request.param, dtype=torch.float64)
    directory = tmp_path_factory.mktemp("tokenizer")
    model.tokenizer.save_pretrained(directory)
    bridge = TransformerBridge.boot_transformers(
        str(directory), hf_model=copy.deepcopy(model.hf), tokenizer=AutoTokenizer.from_pretrained(directory)
    )
    task = PatchingTask.from_prompts(model, "ioi-fixed", CLEAN, CORRUPT, [" Mary", " Tom"], [" John", " Anna"])
    assert bool(task.clean.attention_mask.all()), "TL's helpers take no attention mask: prompts must not be padded"
    return model, bridge, task


def _tl_values(bridge, task: PatchingTask, helper, index: list[tuple[int, int]], axes: list[str]) -> torch.Tensor:
    answers, wrong, rows = task.answers, task.wrong, torch.arange(len(task))

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[rows, -1, answers] - logits[rows, -1, wrong]

    _, clean_cache = bridge.run_with_cache(task.clean.input_ids)
    result = helper(
        bridge, task.corrupt.input_ids, clean_cache, metric, index_axis_names=None, index_df=pd.DataFrame(index, columns=axes), reduce="none"
    )
    return result.values.detach().double()  # (cell, example); TL returns float32


@pytest.mark.parametrize(
    ("sweep", "helper", "index"),
    [
        ("resid_pre", "get_act_patch_resid_pre", [(0, 3), (1, 12), (2, 13), (2, 1)]),
        ("attn_out", "get_act_patch_attn_out", [(0, 13), (2, 7)]),
        ("mlp_out", "get_act_patch_mlp_out", [(1, 13), (2, 4)]),
        ("head_z", "get_act_patch_attn_head_out_all_pos", [(0, 1), (2, 3)]),
    ],
)
def test_matches_transformerlens(models, sweep: str, helper: str, index: list[tuple[int, int]]) -> None:
    model, bridge, task = models
    axes = ["layer", "head"] if sweep.startswith("head") else ["layer", "pos"]
    theirs = _tl_values(bridge, task, getattr(tl_patching, helper), index, axes)
    ours = patch_sweep(model, task, sweep, layers=[0, 1, 2])
    grid = {(layer, second): ours.values[:, layer, second] for layer in range(3) for second in range(ours.values.shape[2])}
    for row, cell in enumerate(index):
        torch.testing.assert_close(grid[cell], theirs[row], rtol=0, atol=2e-5, msg=f"{sweep} at {cell}")
