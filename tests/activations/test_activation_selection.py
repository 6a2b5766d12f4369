"""Selected activations equal ``run_with_cache`` values at the selected tokens of left-padded batches."""

from __future__ import annotations

import pytest
import torch

import interp
from interp.activations import ALL, LAST, ActivationsError, SpanMean, extract
from tests.conftest import PROMPTS, no_hooks_left

SITES = ["blocks.0.hook_resid_post", "blocks.1.attn.hook_z", "blocks.1.hook_mlp_out"]



def reference(model: interp.Model):
    """The batch, its captures on CPU (where extract returns its vectors) and each row's padding."""
    batch = model.to_tokens(PROMPTS).to("cpu")
    _, cache = model.run_with_cache(batch, sites=SITES, device="cpu")
    pad = (batch.shape[1] - batch.lengths).tolist()
    return batch, cache, pad


def test_last_and_all_tokens_match_run_with_cache(tiny: interp.Model):
    batch, cache, pad = reference(tiny)
    assert min(pad) == 0 and max(pad) > 0  # the batch is really left-padded
    last = extract(tiny, PROMPTS, SITES, LAST)
    every = extract(tiny, PROMPTS, SITES, ALL)
    prompt, position = every.index()
    assert prompt.tolist() == [p for p, n in enumerate(batch.lengths.tolist()) for _ in range(n)]
    columns = position + torch.tensor(pad)[prompt]
    assert bool(batch.attention_mask[prompt, columns].all())  # no padding selected
    for site in SITES:
        assert torch.equal(last[site], cache[site][:, -1])
        assert torch.equal(every[site], cache[site][prompt, columns])
        assert every[site].shape[0] == int(batch.lengths.sum())
    assert no_hooks_left(tiny)


def test_span_mean_equals_manual_mean(tiny64: interp.Model):
    batch, cache, pad = reference(tiny64)
    spans = [(1, 4), "Alice and Bob", (-3, -1)]
    got = extract(tiny64, PROMPTS, SITES, SpanMean(spans))
    # "Alice and Bob" sits after "Then," in prompt 1: find its tokens by decoding (BOS included where the model prepends it)
    pieces = [tiny64.tokenizer.decode([i]) for i in interp.tokenize.encode(tiny64.tokenizer, PROMPTS[1], tiny64.prepend_bos)]
    text = ""
    starts = []
    for piece in pieces:
        starts.append(len(text))
        text += piece
    begin = text.index("Alice and Bob")
    end = begin + len("Alice and Bob")
    inside = [i for i, s in enumerate(starts) if s < end and s + len(pieces[i]) > begin]
    n1 = int(batch.lengths[2])
    ranges = [(1, 4), (inside[0], inside[-1] + 1), (n1 - 3, n1 - 1)]
    assert got.picks.start.tolist() == [r[0] for r in ranges] and got.picks.stop.tolist() == [r[1] for r in ranges]
    for site in SITES:
        for row, (a, b) in enumerate(ranges):
            manual = cache[site][row, pad[row] + a : pad[row] + b].mean(0)
            assert torch.equal(got[site][row], manual)


def test_token_batch_and_ids_inputs_agree_with_prompts():
    model = interp.load_model("tiny-gpt2")
    from_prompts = extract(model, PROMPTS, SITES[0], LAST)
    from_batch = extract(model, model.to_tokens(PROMPTS), SITES[0], LAST)
    assert torch.equal(from_prompts[SITES[0]], from_batch[SITES[0]])
    ids = model.to_tokens(PROMPTS[0]).input_ids
    assert torch.equal(extract(model, ids, SITES[0], ALL)[SITES[0]], model.run_with_cache(ids, sites=[SITES[0]])[1][SITES[0]][0])


def test_bad_requests_name_the_fix():
    model = interp.load_model("tiny-llama")
    with pytest.raises(ActivationsError, match="does not occur"):
        extract(model, PROMPTS, SITES[0], SpanMean(["Zebra", (0, 1), (0, 1)]))
    with pytest.raises(ActivationsError, match="one span per prompt"):
        extract(model, PROMPTS, SITES[0], SpanMean([(0, 1)]))
    with pytest.raises(ActivationsError, match="selects no token"):
        extract(model, PROMPTS, SITES[0], SpanMean([(3, 3), (0, 1), (0, 1)]))
    with pytest.raises(ActivationsError, match="attention pattern"):
        extract(model, PROMPTS, "blocks.0.attn.hook_pattern")
    with pytest.raises(interp.UnknownSiteError):
        extract(model, PROMPTS, "blocks.9.hook_resid_post")
    right_padded = model.to_tokens(PROMPTS)
    flipped = interp.tokenize.TokenBatch.from_ids(right_padded.input_ids.flip(1), right_padded.attention_mask.flip(1))
    with pytest.raises(ActivationsError, match="left"):
        extract(model, flipped, SITES[0])
