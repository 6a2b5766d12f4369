"""Token sources and the activation store: packing, exclusion, determinism, seeking and the disk cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from interp.activations import capture_batch as model_activations
from interp.sae.store import ActivationStore
from interp.sae.tokens import DemoSource, JsonlSource, TextSource, TokenFileSource, TokenSourceError, load_tokens, split_rows

SITE = "blocks.1.hook_resid_post"




@pytest.fixture()
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "docs.txt"
    path.write_text("\n\n\n".join(f"When Mary and John went to the park, number {i}, Bob gave a ball to Anna." for i in range(40)))
    return path


def test_demo_corpus_ships_and_packs(model):
    tokens = load_tokens(DemoSource(), model.tokenizer, 64)
    assert tokens.n_rows > 1000 and tokens.context_size == 64
    assert tokens.fingerprint == load_tokens(DemoSource(), model.tokenizer, 64).fingerprint


def test_text_jsonl_and_token_files_pack_the_same_documents(model, tmp_path: Path, text_file: Path):
    text = load_tokens(TextSource(paths=[str(text_file)]), model.tokenizer, 16)
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": d}) for d in text_file.read_text().split("\n\n\n")))
    from_jsonl = load_tokens(JsonlSource(paths=[str(jsonl)]), model.tokenizer, 16)
    assert np.array_equal(text.ids, from_jsonl.ids)
    eos = model.tokenizer.eos_token_id
    assert (text.ids == eos).sum() >= 30  # documents separated by EOS
    np.save(tmp_path / "rows.npy", np.asarray(text.ids))
    rows = load_tokens(TokenFileSource(path=str(tmp_path / "rows.npy")), model.tokenizer, 16)
    assert np.array_equal(np.asarray(rows.ids), text.ids)
    stream = np.asarray(text.ids, dtype=np.uint16).reshape(-1)
    stream.tofile(tmp_path / "stream.bin")
    with_bos = load_tokens(TokenFileSource(path=str(tmp_path / "stream.bin")), model.tokenizer, 17, prepend_bos=True)
    assert (with_bos.ids[:, 0] == model.tokenizer.bos_token_id).all()
    assert np.array_equal(with_bos.ids[:, 1:], text.ids[: with_bos.n_rows])
    with pytest.raises(TokenSourceError, match="field"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"content": "x"}\n')
        load_tokens(JsonlSource(paths=[str(bad)]), model.tokenizer, 16)


def test_a_token_file_of_another_tokenizer_is_refused(model, tmp_path: Path):
    vocabulary = len(model.tokenizer)
    np.save(tmp_path / "other.npy", np.array([1, 2, vocabulary + 5, 3] * 16, dtype=np.int64))
    with pytest.raises(TokenSourceError, match=rf"ids from 1 to {vocabulary + 5}.*has {vocabulary} ids.*another tokenizer"):
        load_tokens(TokenFileSource(path=str(tmp_path / "other.npy")), model.tokenizer, 16)
    np.save(tmp_path / "negative.npy", np.array([-1, 2] * 32, dtype=np.int64))
    with pytest.raises(TokenSourceError, match="ids from -1"):
        load_tokens(TokenFileSource(path=str(tmp_path / "negative.npy")), model.tokenizer, 16)
    np.save(tmp_path / "empty.npy", np.array([], dtype=np.uint16))
    with pytest.raises(TokenSourceError, match="holds no tokens"):
        load_tokens(TokenFileSource(path=str(tmp_path / "empty.npy")), model.tokenizer, 16)


def test_keep_mask_drops_special_tokens_and_first_positions(model, text_file: Path):
    tokens = load_tokens(TextSource(paths=[str(text_file)]), model.tokenizer, 16)
    ids = tokens.rows(slice(0, 10))
    keep = tokens.keep_mask(ids, exclude_special=True, skip_first=2)
    assert not keep[:, :2].any()
    assert not keep[ids == model.tokenizer.eos_token_id].any()
    assert keep.sum() == ((ids != model.tokenizer.eos_token_id)[:, 2:]).sum()


def test_split_is_disjoint_and_fixed():
    train, held = split_rows(100, 10, seed=3)
    assert len(set(train) & set(held)) == 0 and len(train) + len(held) == 100
    assert np.array_equal(held, split_rows(100, 10, seed=3)[1])


def test_truncated_forward_matches_full_capture(model, text_file: Path):
    ids = load_tokens(TextSource(paths=[str(text_file)]), model.tokenizer, 16).rows(slice(0, 4))
    ours, _ = model_activations(model, [SITE, "blocks.0.hook_mlp_out"], ids)
    _, cache = model.run_with_cache(ids, sites=[SITE, "blocks.0.hook_mlp_out"])
    for site in ours:
        assert torch.equal(ours[site], cache[site])


def test_stream_is_deterministic_seekable_and_cache_equivalent(model, tmp_path: Path, text_file: Path):
    tokens = load_tokens(TextSource(paths=[str(text_file)]), model.tokenizer, 16)
    train, _ = split_rows(tokens.n_rows, 4)
    kwargs = dict(batch_size=100, buffer_rows=8, model_batch_size=8, seed=7)
    store = ActivationStore(model, [SITE], tokens, train, **kwargs)
    batches = list(store.batches(0, 12))  # spans several chunks and an epoch boundary
    assert 12 * 100 > store.tokens_per_epoch
    assert all(b.acts[SITE].shape == (100, 64) for b in batches)
    again = list(ActivationStore(model, [SITE], tokens, train, **kwargs).batches(7, 10))
    for i, batch in enumerate(again):
        assert batch.index == 7 + i and torch.equal(batch.acts[SITE], batches[7 + i].acts[SITE])
    first_epoch = torch.cat([b.acts[SITE] for b in batches])[: store.tokens_per_epoch]
    ids = tokens.rows(train)
    expected, _ = model_activations(model, [SITE], ids)
    kept = expected[SITE][store.keep_mask(ids)]
    assert torch.allclose(first_epoch.sum(0), kept.sum(0), atol=1e-3)  # each kept token once per epoch

    cached = ActivationStore(model, [SITE], tokens, train, cache=True, cache_dir=tmp_path / "c", cache_dtype="float32", **kwargs)
    meta = json.loads(next((tmp_path / "c").glob("*/meta.json")).read_text())
    assert meta["rows_done"] == tokens.n_rows and meta["dtype"] == "float32"
    for a, b in zip(cached.batches(0, 12), batches, strict=True):
        assert torch.allclose(a.acts[SITE], b.acts[SITE], atol=1e-5)
    reused = ActivationStore(model, [SITE], tokens, train, cache=True, cache_dir=tmp_path / "c", cache_dtype="float32", **kwargs)
    assert reused.caches[SITE].complete and len(list((tmp_path / "c").iterdir())) == 1


def test_interrupted_cache_build_continues(model, tmp_path: Path, text_file: Path):
    tokens = load_tokens(TextSource(paths=[str(text_file)]), model.tokenizer, 16)
    calls = []

    class Stop(Exception):
        pass

    def stop_early(done: int, total: int) -> None:
        calls.append(done)
        if done >= 8:
            raise Stop

    with pytest.raises(Stop):
        ActivationStore(model, [SITE], tokens, model_batch_size=4, cache=True, cache_dir=tmp_path / "c", progress=stop_early)
    meta_path = next((tmp_path / "c").glob("*/meta.json"))
    assert json.loads(meta_path.read_text())["rows_done"] == 8
    resumed = []
    store = ActivationStore(model, [SITE], tokens, model_batch_size=4, cache=True, cache_dir=tmp_path / "c", progress=lambda d, t: resumed.append(d))
    assert resumed[0] == 12 and store.caches[SITE].complete
    full, _ = model_activations(model, [SITE], tokens.rows(slice(0, tokens.n_rows)))
    cached, _ = store.caches[SITE].read(np.arange(tokens.n_rows))
    assert torch.allclose(cached, full[SITE], atol=2e-2, rtol=1e-3)  # float16 storage


def test_gradient_capture_for_gsae(model, text_file: Path):
    tokens = load_tokens(TextSource(paths=[str(text_file)]), model.tokenizer, 16)
    store = ActivationStore(model, [SITE], tokens, batch_size=50, buffer_rows=4, model_batch_size=4, with_grads=True)
    batch = next(store.batches())
    assert batch.grads is not None and batch.grads[SITE].shape == (50, 64) and batch.grads[SITE].abs().sum() > 0
