"""BOS defaults: GGUF metadata, then the tokenizer's config, then the family; overridable; shown in repr."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import interp
from interp.errors import InvalidArgumentError
from interp.model import default_prepend_bos
from interp.models.gguf import ADD_BOS_KEY, MARKER, cached_add_bos_token, read_add_bos_token
from interp.models.tiny import tiny_tokenizer


@pytest.mark.parametrize("name", ["tiny-gemma2", "tiny-gemma3"])
def test_gemma_families_default_to_bos(name: str) -> None:
    model = interp.load_model(name)
    assert model.tokenizer.bos_token_id is not None
    assert model.prepend_bos is True
    assert "family requires BOS" in repr(model)
    batch = model.to_tokens("When Mary and John went")
    assert int(batch.input_ids[0, 0]) == model.tokenizer.bos_token_id


def test_other_tiny_families_default_to_no_bos() -> None:
    model = interp.load_model("tiny-gpt2")
    assert model.prepend_bos is False
    assert "prepend_bos=False" in repr(model)


def test_override_in_load_model_and_model() -> None:
    model = interp.load_model("tiny-gemma2", prepend_bos=False)
    assert model.prepend_bos is False and "load_model argument" in repr(model)
    model = interp.load_model("tiny-gpt2", prepend_bos=True)
    assert model.prepend_bos is True
    wrapped = interp.Model(model.hf, model.tokenizer, prepend_bos=False)
    assert wrapped.prepend_bos is False and "set by the caller" in repr(wrapped)


def test_tokenizer_config_decides_before_the_family() -> None:
    tokenizer = copy.deepcopy(tiny_tokenizer())
    tokenizer.init_kwargs["add_bos_token"] = True
    assert default_prepend_bos(tokenizer, "llama") == (True, "tokenizer config add_bos_token")
    tokenizer.init_kwargs["add_bos_token"] = False
    assert default_prepend_bos(tokenizer, "gemma2") == (False, "tokenizer config add_bos_token")


def test_prepend_bos_true_without_a_bos_token_is_refused() -> None:
    model = interp.load_model("tiny-gpt2")
    tokenizer = copy.deepcopy(model.tokenizer)
    tokenizer.bos_token = None
    with pytest.raises(InvalidArgumentError, match="no BOS token"):
        interp.Model(model.hf, tokenizer, prepend_bos=True)
    assert default_prepend_bos(tokenizer, "gemma2")[0] is False


def _gguf_with_metadata(path: Path, add_bos: bool | None) -> Path:
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    if add_bos is not None:
        writer.add_add_bos_token(add_bos)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("add_bos", [True, False, None])
def test_gguf_metadata_is_read(tmp_path: Path, add_bos: bool | None) -> None:
    assert read_add_bos_token(_gguf_with_metadata(tmp_path / "m.gguf", add_bos)) is add_bos


def test_cache_written_without_the_flag_records_it_once(tmp_path: Path) -> None:
    gguf = _gguf_with_metadata(tmp_path / "m.gguf", True)
    directory = tmp_path / "cache"
    directory.mkdir()
    (directory / MARKER).write_text(json.dumps({"source": {}, "files": {}}))
    assert cached_add_bos_token(directory, gguf) is True
    assert json.loads((directory / MARKER).read_text())[ADD_BOS_KEY] is True
    gguf.unlink()  # now read from the marker alone
    assert cached_add_bos_token(directory, gguf) is True


@pytest.mark.slow
def test_default_model_follows_its_gguf_metadata(smollm: interp.Model) -> None:
    from interp.models import smollm2_gguf

    assert read_add_bos_token(smollm2_gguf()) is False
    assert smollm.prepend_bos is False
    assert "GGUF metadata" in repr(smollm)
