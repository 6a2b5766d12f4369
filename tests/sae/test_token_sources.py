"""Streamed token sources (Parquet, save_to_disk datasets, text directories) pack exactly like the text source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import interp
from interp.config import validate
from interp.sae.config import DataConfig
from interp.sae.tokens import HFDiskSource, ParquetSource, TextDirSource, TextSource, TokenSourceError, load_tokens

DOCS = [f"Document {i}: Alice met Bob near the river and they talked about {'boats ' * (i % 5)}for a while." for i in range(30)]
CONTEXT = 16


def reference(tmp_path: Path, tokenizer) -> np.ndarray:
    path = tmp_path / "all.txt"
    path.write_text("\n\n\n".join(DOCS), encoding="utf-8")
    return load_tokens(TextSource(paths=[str(path)]), tokenizer, CONTEXT).ids


def test_parquet_files_and_directories(tmp_path: Path, model: interp.Model) -> None:
    folder = tmp_path / "parquet"
    folder.mkdir()
    pd.DataFrame({"text": DOCS[:12], "id": range(12)}).to_parquet(folder / "part-0.parquet", row_group_size=5)
    pd.DataFrame({"text": DOCS[12:], "id": range(12, 30)}).to_parquet(folder / "part-1.parquet", row_group_size=5)
    expected = reference(tmp_path, model.tokenizer)
    from_dir = load_tokens(ParquetSource(paths=[str(folder)]), model.tokenizer, CONTEXT)
    from_files = load_tokens(
        ParquetSource(paths=[str(folder / "part-0.parquet"), str(folder / "part-1.parquet")]), model.tokenizer, CONTEXT
    )
    assert np.array_equal(from_dir.ids, expected) and np.array_equal(from_files.ids, expected)
    assert from_dir.fingerprint == from_files.fingerprint
    with pytest.raises(TokenSourceError, match=r"has no column 'body'; its columns are \['text', 'id'\]"):
        load_tokens(ParquetSource(paths=[str(folder)], column="body"), model.tokenizer, CONTEXT)
    with pytest.raises(TokenSourceError, match="does not hold text"):
        load_tokens(ParquetSource(paths=[str(folder)], column="id"), model.tokenizer, CONTEXT)


def test_reading_stops_at_max_tokens(tmp_path: Path, model: interp.Model) -> None:
    """Streamed: a damaged second file is never opened when the first holds enough tokens."""
    folder = tmp_path / "parquet"
    folder.mkdir()
    pd.DataFrame({"text": DOCS}).to_parquet(folder / "a.parquet", row_group_size=4)
    (folder / "b.parquet").write_bytes(b"not parquet at all")
    rows = load_tokens(ParquetSource(paths=[str(folder)], max_tokens=5 * CONTEXT), model.tokenizer, CONTEXT)
    assert np.array_equal(rows.ids, reference(tmp_path, model.tokenizer)[:5])
    with pytest.raises(TokenSourceError, match=r"b.parquet is not a readable Parquet file"):
        load_tokens(ParquetSource(paths=[str(folder)]), model.tokenizer, CONTEXT)


def test_dataset_saved_to_disk(tmp_path: Path, model: interp.Model) -> None:
    datasets = pytest.importorskip("datasets")
    data = datasets.Dataset.from_dict({"text": DOCS, "label": [0] * len(DOCS)})
    data.save_to_disk(str(tmp_path / "single"), max_shard_size="1KB")  # several Arrow files
    datasets.DatasetDict({"train": data, "test": data.select(range(3))}).save_to_disk(str(tmp_path / "dict"))
    expected = reference(tmp_path, model.tokenizer)
    assert len(list((tmp_path / "single").glob("*.arrow"))) > 1
    assert np.array_equal(load_tokens(HFDiskSource(path=str(tmp_path / "single")), model.tokenizer, CONTEXT).ids, expected)
    train = load_tokens(HFDiskSource(path=str(tmp_path / "dict"), split="train"), model.tokenizer, CONTEXT)
    assert np.array_equal(train.ids, expected)
    with pytest.raises(TokenSourceError, match=r"is a DatasetDict; choose its split with split: one of \['train', 'test'\]"):
        load_tokens(HFDiskSource(path=str(tmp_path / "dict")), model.tokenizer, CONTEXT)
    with pytest.raises(TokenSourceError, match="not a dataset saved with save_to_disk"):
        load_tokens(HFDiskSource(path=str(tmp_path)), model.tokenizer, CONTEXT)


def test_text_directory(tmp_path: Path, model: interp.Model) -> None:
    folder = tmp_path / "texts"
    (folder / "b").mkdir(parents=True)
    (folder / "a.txt").write_text("\n\n\n".join(DOCS[:10]), encoding="utf-8")
    (folder / "b" / "c.txt").write_text("\n\n\n".join(DOCS[10:]), encoding="utf-8")
    (folder / "notes.md").write_text("not matched", encoding="utf-8")
    rows = load_tokens(TextDirSource(path=str(folder)), model.tokenizer, CONTEXT)
    assert np.array_equal(rows.ids, reference(tmp_path, model.tokenizer))
    with pytest.raises(TokenSourceError, match=r"no file under .* matches '\*\*/\*.rst'"):
        load_tokens(TextDirSource(path=str(folder), pattern="**/*.rst"), model.tokenizer, CONTEXT)


def test_sources_are_chosen_in_the_config() -> None:
    data = validate({"source": {"kind": "parquet", "paths": ["x.parquet"], "column": "body"}}, DataConfig)
    assert isinstance(data.source, ParquetSource) and data.source.column == "body"
    assert isinstance(validate({"source": {"kind": "text_dir", "path": "docs"}}, DataConfig).source, TextDirSource)
    assert isinstance(validate({"source": {"kind": "hf_disk", "path": "d", "split": "train"}}, DataConfig).source, HFDiskSource)
