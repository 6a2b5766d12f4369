"""The KV cache helper: a cached forward continues an uncached one, and no deprecated name is used."""

from __future__ import annotations

import logging
import warnings

import torch

import interp
from interp.arch import kv
from tests.conftest import PROMPTS


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_cached_forward_raises_no_deprecation_about_past_key_values(tiny: interp.Model) -> None:
    logger = logging.getLogger("transformers")
    records = _Records()
    logger.addHandler(records)
    logging.Logger.warning_once.cache_clear()  # transformers logs each deprecation once per process
    batch = tiny.to_tokens(PROMPTS[0])
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("error")
            first = tiny.call(input_ids=batch.input_ids[:, :-1], use_cache=True, **kv.cache_kwargs(kv.empty_cache()))
            prefix = kv.keys_values(kv.returned_cache(first))
            second = tiny.call(
                input_ids=batch.input_ids[:, -1:],
                attention_mask=batch.attention_mask,
                position_ids=batch.position_ids[:, -1:],
                use_cache=True,
                **kv.cache_kwargs(kv.cache_from(prefix)),
            )
    finally:
        logger.removeHandler(records)
    assert not [m for m in records.messages if "past_key_values" in m or "deprecated" in m]
    full = tiny.run(batch)
    torch.testing.assert_close(second.logits[:, -1], full[:, -1], rtol=1e-4, atol=1e-4)
    assert len(prefix) == tiny.dims.n_layers
    assert prefix[0][0].shape[-2] == batch.shape[1] - 1
