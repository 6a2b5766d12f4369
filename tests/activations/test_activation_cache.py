"""The disk cache: hits run no forward and return the same bytes; any key change misses; writes are atomic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import interp
from interp.activations import ALL, LAST, ActivationCacheError, SpanMean, extract
from interp.activations import disk
from tests.conftest import PROMPTS

SITES = ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"]


@pytest.fixture()
def model() -> interp.Model:
    return interp.load_model("tiny-llama")


@pytest.fixture()
def forwards(model):
    count = []
    handle = model.arch.embed().register_forward_hook(lambda *a: count.append(1))
    yield count
    handle.remove()


def finished(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if not p.name.startswith("."))


def test_hit_returns_same_bytes_without_a_forward(model, forwards, tmp_path: Path):
    first = extract(model, PROMPTS, SITES, ALL, cache=True, cache_dir=tmp_path, max_rows=2)
    assert len(forwards) == 2 and len(finished(tmp_path)) == 2  # one directory per site
    assert first[SITES[0]].dtype == torch.float16
    fresh = extract(model, PROMPTS, SITES, ALL, max_rows=2)
    for site in SITES:
        assert torch.equal(first[site], fresh[site].half())
    forwards.clear()
    again = extract(model, PROMPTS, SITES, ALL, cache=True, cache_dir=tmp_path)
    assert not forwards
    for site in SITES:
        assert again[site].numpy().tobytes() == first[site].numpy().tobytes()
        assert again.cache_dirs[site] == first.cache_dirs[site]
    files = sorted(p.name for d in finished(tmp_path) for p in d.iterdir())
    assert files == ["acts.bin", "acts.bin", "meta.json", "meta.json"]  # raw arrays and JSON, nothing pickled
    meta = json.loads((first.cache_dirs[SITES[0]] / "meta.json").read_text())
    assert meta["shape"] == [sum(len(interp.tokenize.encode(model.tokenizer, p)) for p in PROMPTS), 64]


def test_only_missing_sites_are_computed(model, forwards, tmp_path: Path):
    extract(model, PROMPTS, SITES[:1], LAST, cache=True, cache_dir=tmp_path)
    forwards.clear()
    both = extract(model, PROMPTS, SITES, LAST, cache=True, cache_dir=tmp_path)
    assert len(forwards) == 1 and len(finished(tmp_path)) == 2
    assert torch.equal(both[SITES[1]], extract(model, PROMPTS, SITES[1], LAST)[SITES[1]].half())


def test_every_key_part_invalidates(model, forwards, tmp_path: Path):
    site = SITES[0]
    base = dict(cache=True, cache_dir=tmp_path)
    extract(model, PROMPTS, site, LAST, **base)
    variants = [
        lambda: extract(model, PROMPTS, SITES[1], LAST, **base),  # site
        lambda: extract(model, PROMPTS[:2], site, LAST, **base),  # data
        lambda: extract(model, [p + " Mary" for p in PROMPTS], site, LAST, **base),  # data
        lambda: extract(model, PROMPTS, site, ALL, **base),  # selection
        lambda: extract(model, PROMPTS, site, SpanMean([(0, 2)] * 3), **base),  # selection
        lambda: extract(model, PROMPTS, site, SpanMean([(0, 3)] * 3), **base),  # span bounds
        lambda: extract(model, PROMPTS, site, LAST, cache_dtype="float32", **base),  # dtype
        lambda: extract(model, PROMPTS, site, LAST, lm_loss_grads=True, **base),  # gradients
        lambda: extract(model, PROMPTS, site, LAST, data_key="other", **base),  # caller's fingerprint
    ]
    for number, call in enumerate(variants, start=2):
        forwards.clear()
        call()
        assert forwards and len(finished(tmp_path)) == number
    forwards.clear()
    with torch.no_grad():
        model.arch.layers()[1].mlp.down_proj.weight[0, 0] += 1e-3  # one weight, after the site: still a new key
    changed = extract(model, PROMPTS, site, LAST, **base)
    assert forwards and len(finished(tmp_path)) == len(variants) + 2
    forwards.clear()
    assert torch.equal(extract(model, PROMPTS, site, LAST, **base)[site], changed[site]) and not forwards


def test_crash_while_writing_leaves_no_readable_cache(model, forwards, tmp_path: Path):
    class Crash(Exception):
        pass

    def crash(done: int, total: int) -> None:
        if done >= 1:
            raise Crash

    with pytest.raises(Crash):
        extract(model, PROMPTS, SITES, ALL, cache=True, cache_dir=tmp_path, max_rows=1, progress=crash)
    assert finished(tmp_path) == []  # nothing under a final name
    partial = sorted(p for p in tmp_path.iterdir() if p.name.endswith(".partial"))
    assert len(partial) == 2 and all(json.loads((p / "meta.json").read_text())["rows_done"] == 1 for p in partial)

    original = disk.CacheWriter.write
    calls = []

    def dies_after_data(self, rows_stop, vec_start, acts, grads):  # killed between the data and its meta
        calls.append(rows_stop)
        self.acts[vec_start : vec_start + acts.shape[0]] = acts
        raise Crash

    disk.CacheWriter.write = dies_after_data
    try:
        with pytest.raises(Crash):
            extract(model, PROMPTS, SITES, ALL, cache=True, cache_dir=tmp_path, max_rows=1)
    finally:
        disk.CacheWriter.write = original
    assert calls == [2] and finished(tmp_path) == []  # resumed at prompt 1 and still unpublished

    forwards.clear()
    done = extract(model, PROMPTS, SITES, ALL, cache=True, cache_dir=tmp_path, max_rows=1)
    assert len(forwards) == 2  # prompts 1 and 2 only
    assert len(finished(tmp_path)) == 2 and not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    fresh = extract(model, PROMPTS, SITES, ALL, max_rows=1)
    for site in SITES:
        assert torch.equal(done[site], fresh[site].half())


def test_a_foreign_directory_under_a_key_is_refused(model, tmp_path: Path):
    built = extract(model, PROMPTS, SITES[0], LAST, cache=True, cache_dir=tmp_path)
    meta_path = built.cache_dirs[SITES[0]] / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["key"]["site"] = "blocks.1.hook_resid_post"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ActivationCacheError, match="delete the directory"):
        extract(model, PROMPTS, SITES[0], LAST, cache=True, cache_dir=tmp_path)


def test_memory_mapped_token_rows_are_read_per_batch(model, forwards, tmp_path: Path):
    ids = np.asarray(model.to_tokens(PROMPTS[0]).input_ids[0, :12]).repeat(5).reshape(5, 12)
    np.save(tmp_path / "rows.npy", ids)
    rows = np.load(tmp_path / "rows.npy", mmap_mode="r")
    got = extract(model, rows, SITES[0], ALL, cache=True, cache_dir=tmp_path / "c", max_rows=2)
    assert len(forwards) == 3 and got[SITES[0]].shape == (60, 64)
    _, cache = model.run_with_cache(torch.from_numpy(ids), sites=[SITES[0]])
    assert torch.allclose(got[SITES[0]].float(), cache[SITES[0]].reshape(60, 64), atol=1e-2, rtol=1e-3)
