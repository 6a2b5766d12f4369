"""Sweeps by named position: every example is patched at its own token for the name.

The reference is a naive loop over examples: each example alone (its own single-row task), one
full forward per cell with plain patches at that example's index (``naive_values``), no engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError

import interp
from interp.cells import SweepRequest, sweep_groups
from interp.config import load_config
from interp.errors import InterventionError
from interp.patching import patch_sweep
from interp.patching.config import PatchConfig
from interp.patching.persist import load_result, result_names
from interp.patching.runner import run_config
from interp.runs import RunStore
from interp.tasks import TaskError, get_metric, ioi_task, pairs_from_jsonl, position_labels
from tests.patching.test_sweeps import naive_values


def per_example_reference(
    model: interp.Model, task, sweep: str, names: list[str], direction: str, **subset: list[int]
) -> torch.Tensor:
    """(example, layer[, head], name): each example run alone, patched at its own index, one forward per cell."""
    metric = get_metric("logit_diff")
    rows = []
    for e in range(len(task)):
        alone = task.subset([e])
        width = alone.clean.shape[1]
        groups, _, coords = sweep_groups(model, alone, sweep, positions=[width + task.positions[n][e] for n in names], **subset)
        values = naive_values(model, alone, groups, direction, metric)  # (1, cells), layer-major like the sweep
        rows.append(values[0].reshape(*(len(coords[a]) for a in coords)))
    return torch.stack(rows)


@pytest.mark.parametrize(("sweep", "direction", "corruption"), [
    ("resid_pre", "denoising", "abc"),
    ("head_z_by_pos", "noising", "abc"),
    ("attn_out", "denoising", "noise"),  # a base intervention: full forwards
])
def test_named_sweep_patches_each_example_at_its_own_index(
    tiny64: interp.Model, sweep: str, direction: str, corruption: str
) -> None:
    task = ioi_task(tiny64, n=5, seed=3, corruption=corruption)
    assert not task.aligned  # mixed templates and orders: the names sit at different columns
    names = ["S1", "IO", "S2", "END"]
    assert any(len(set(task.positions[n])) > 1 for n in names)
    subset = {"layers": [0, 2]} if sweep != "head_z_by_pos" else {"layers": [1], "heads": [0, 3]}
    result = patch_sweep(tiny64, task, sweep, direction=direction, positions=names, max_rows=7, **subset)
    assert result.positions == "named" and result.position_labels == names
    assert result.coords["pos"] == [0, 1, 2, 3]
    reference = per_example_reference(tiny64, task, sweep, names, direction, **subset)
    torch.testing.assert_close(result.values, reference, rtol=0, atol=1e-9)


def test_single_template_gives_the_same_table_by_name_and_by_raw_position(tiny64: interp.Model) -> None:
    task = ioi_task(tiny64, n=4, seed=2, order="ABBA", templates=[0])
    assert task.aligned and len(task.clean_prompts[0]) and all(len(set(c)) == 1 for c in task.positions.values())
    by_name = patch_sweep(tiny64, task, "resid_pre", positions="named")
    width = task.clean.shape[1]
    raw_positions = [width + task.positions[name][0] for name in by_name.position_labels]
    by_raw = patch_sweep(tiny64, task, "resid_pre", positions=raw_positions)
    torch.testing.assert_close(by_name.values, by_raw.values, rtol=0, atol=1e-12)
    torch.testing.assert_close(by_name.summary_frame()["mean"], by_raw.summary_frame()["mean"], rtol=0, atol=1e-12)
    # one template: a raw label names the token where every example has it, and only there
    labels = position_labels(tiny64, task)
    at_and, at_io = width + task.positions["and"][0], width + task.positions["IO"][0]
    assert labels[at_and] == f"{at_and}: and"
    assert labels[at_io] == f"{at_io}: ({len(set(task.examples['io']))} tokens)"


def test_raw_labels_never_name_one_examples_token_when_templates_differ(tiny64: interp.Model) -> None:
    task = ioi_task(tiny64, n=6, seed=0)
    labels = position_labels(tiny64, task)
    ids, mask = task.clean.input_ids, task.clean.attention_mask.bool()
    for column, label in enumerate(labels):
        distinct = set(ids[mask[:, column], column].tolist())
        if len(distinct) > 1 or not mask[:, column].all():
            assert "token" in label or "pad" in label, label


@pytest.mark.slow
def test_ioi_named_positions_are_the_named_tokens(smollm: interp.Model) -> None:
    task = ioi_task(smollm, n=8, seed=0)
    assert list(task.positions)[:6] == ["S1", "S1+1", "IO", "and", "S2", "END"]
    ids = task.clean.input_ids
    width = ids.shape[1]
    for e in range(len(task)):
        token = lambda name: smollm.tokenizer.decode([int(ids[e, width + task.positions[name][e]])])  # noqa: E731
        assert token("IO") == " " + task.examples["io"][e]
        assert token("S1") == token("S2") == " " + task.examples["s"][e]
        assert token("and") == " and"
        assert task.positions["END"][e] == -1
        assert task.positions["S1"][e] < task.positions["S2"][e]


def test_selection_errors_are_named(tiny64: interp.Model, tmp_path: Path) -> None:
    task = ioi_task(tiny64, n=3, seed=0)
    with pytest.raises(InterventionError, match=r"no named position \['S3'\]; its named positions are"):
        sweep_groups(tiny64, task, "resid_pre", positions=["S3"], allow_named=True)
    with pytest.raises(InterventionError, match="raw positions"):
        sweep_groups(tiny64, task, "resid_pre", positions="named")  # a method without per-example positions
    with pytest.raises(InterventionError, match="mix names and indices"):
        sweep_groups(tiny64, task, "resid_pre", positions=["S1", 3], allow_named=True)
    with pytest.raises(InterventionError, match="cannot select"):
        sweep_groups(tiny64, task, "head_z", positions="named", allow_named=True)
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"clean": "the Mary sat", "corrupt": "the John sat", "answer": " Tom", "wrong": " Kate"}) + "\n")
    plain = pairs_from_jsonl(tiny64, path)
    with pytest.raises(InterventionError, match="declares no named positions"):
        sweep_groups(tiny64, plain, "resid_pre", positions="named", allow_named=True)
    assert SweepRequest("resid_pre", positions="named").positions == "named"
    assert SweepRequest("resid_pre", positions=["S1", "END"]).positions == ["S1", "END"]
    assert SweepRequest("resid_pre", positions=[-1, 3]).positions == [-1, 3]
    with pytest.raises(ValidationError, match="named"):
        SweepRequest("resid_pre", positions="all")


def test_jsonl_pairs_declare_positions(tiny64: interp.Model, tmp_path: Path) -> None:
    from interp.tokenize import encode

    pairs = [("the Mary sat on it", "the John sat on it"), ("so the Alice sat", "so the Bob sat")]
    lines = []
    for clean, corrupt in pairs:
        a, b = (encode(tiny64.tokenizer, text, tiny64.prepend_bos) for text in (clean, corrupt))
        differs = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
        lines.append({"clean": clean, "corrupt": corrupt, "answer": " Tom", "wrong": " Kate",
                      "positions": {"who": differs, "END": -1}})
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    task = pairs_from_jsonl(tiny64, path)
    width = task.clean.shape[1]
    for e, line in enumerate(lines):
        assert task.positions["who"][e] == line["positions"]["who"] - task.clean.lengths[e]
        column = width + task.positions["who"][e]
        assert task.clean.input_ids[e, column] != task.corrupt.input_ids[e, column]  # the token that differs
    result = patch_sweep(tiny64, task, "resid_pre", positions="named", layers=[1])
    reference = per_example_reference(tiny64, task, "resid_pre", ["who", "END"], "denoising", layers=[1])
    torch.testing.assert_close(result.values, reference, rtol=0, atol=1e-9)

    bad = [lines[0], {**lines[1], "positions": {"whom": 2}}]
    path.write_text("\n".join(json.dumps(line) for line in bad) + "\n")
    with pytest.raises(TaskError, match="line 2: field 'positions' names"):
        pairs_from_jsonl(tiny64, path)
    path.write_text(json.dumps({**lines[0], "positions": {"who": 40, "END": -1}}) + "\n")
    with pytest.raises(TaskError, match="outside the clean prompt"):
        pairs_from_jsonl(tiny64, path)


def test_config_run_by_name_stores_names_and_patched_tokens(tmp_path: Path) -> None:
    config = {
        "model": "tiny-llama", "dtype": "float64", "task": {"kind": "ioi", "n": 4, "seed": 0},
        "sweeps": [{"sweep": "resid_pre", "positions": "named", "layers": [0, 1]}], "shard_cells": 5,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    run = run_config(load_config(path, PatchConfig), RunStore(tmp_path / "runs"))
    (name,) = result_names(run)
    result = load_result(run, name)
    assert result.positions == "named" and result.position_labels[:3] == ["S1", "S1+1", "IO"]
    task = run.read_table("task")
    assert {"token S1", "token IO", "pos S2"} <= set(task.columns)
    assert all(label.split(":")[1].strip() == io for label, io in zip(task["token IO"], task["io"], strict=True))
    top = run.manifest["summary"][name]["top_cells"][0]
    assert top["position"] == result.position_labels[top["pos"]]
