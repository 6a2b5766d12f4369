"""Function vectors on Ray actors: the head sweep (a shard per layer) and the accuracy sweep give the
same tables as a run in this process, and a run resumes across executors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from interp.models import load_model
from interp.runs import Run, RunStore
from interp.steering.function_vectors import extract_function_vector
from interp.steering.fv_config import FunctionVectorConfig
from interp.steering.fv_runner import run_function_vectors, vectors_path
from interp.steering.fv_tasks import load_icl_task
from interp.vectors import load_vectors

NAMES = ["Mary", "John", "Alice", "Bob", "Tom", "Anna", "James", "Sarah", "Paul", "Kate"]


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> FunctionVectorConfig:
    task = tmp_path_factory.mktemp("task") / "names.jsonl"
    task.write_text("".join(json.dumps({"input": a, "output": b}) + "\n" for a, b in zip(NAMES, NAMES[1:] + NAMES[:1])))
    return FunctionVectorConfig(
        model="tiny-llama", task=str(task), n_shots=2, n_mean_prompts=4, n_effect_prompts=3, n_top_heads=2,
        filter_correct=False, layers=[0, 2], batch_size=2,
    )


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory, config: FunctionVectorConfig) -> Run:
    torch.set_num_threads(1)  # Ray actors of one CPU run on one thread: reductions in the same order
    return run_function_vectors(config, RunStore(tmp_path_factory.mktemp("local")))


def assert_same_tables(run: Run, reference: Run) -> None:
    for name in ("head_effects",):
        ours, theirs = run.read_tensors(name), reference.read_tensors(name)
        assert ours.keys() == theirs.keys()
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]), key  # bit for bit
    for name in ("heads", "accuracy"):
        assert run.read_table(name).equals(reference.read_table(name)), name
    assert run.read_json("extraction") == reference.read_json("extraction")
    assert run.read_json("baselines") == reference.read_json("baselines")
    for which in ("function_vector", "random_heads"):
        assert torch.equal(load_vectors(vectors_path(run, which)).vectors, load_vectors(vectors_path(reference, which)).vectors)


def test_head_shards_match_the_one_call_sweep(local_run: Run, config: FunctionVectorConfig) -> None:
    """The per-layer head shards, stacked, are the all-layers head sweep of the same prompts."""
    model = load_model(config.model)
    settings = config.model_dump(include={"n_shots", "n_mean_prompts", "n_effect_prompts", "n_top_heads",
                                          "filter_correct", "seed"})
    found = extract_function_vector(model, load_icl_task(config.task), batch_size=config.batch_size, **settings)
    stored = local_run.read_tensors("head_effects")
    assert len(local_run.finished_shards("heads")) == model.dims.n_layers
    torch.testing.assert_close(stored["means"], found.means, rtol=0, atol=0)
    torch.testing.assert_close(stored["cie"], found.effects.cie, rtol=0, atol=1e-6)
    torch.testing.assert_close(stored["shuffled_prob"], found.effects.shuffled_prob, rtol=0, atol=1e-6)


def test_ray_run_equals_local_run(ray_cluster: object, local_run: Run, config: FunctionVectorConfig, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int]] = []
    run = run_function_vectors(config, RunStore(tmp_path), progress=lambda *a: seen.append(a), executor="ray", workers=2)
    assert run.status == "finished"
    assert_same_tables(run, local_run)
    assert [s for s in seen if s[0] == "heads"][-1] == ("heads", 3, 3)
    assert [s for s in seen if s[0] == "layers"][-1] == ("layers", 2, 2)


def test_run_resumes_across_executors(ray_cluster: object, local_run: Run, config: FunctionVectorConfig, tmp_path: Path) -> None:
    store = RunStore(tmp_path)

    def stop_at(stage: str, count: int) -> Callable[[str, int, int], None]:
        def progress(name: str, done: int, total: int) -> None:
            if name == stage and done == count:
                raise Stop

        return progress

    with pytest.raises(Stop):
        run_function_vectors(config, store, progress=stop_at("heads", 1))  # the means and one layer's heads here
    (info,) = store.list()
    with pytest.raises(Stop):
        run_function_vectors(config, store, resume=info.id, progress=stop_at("layers", 1), executor="ray", workers=2)
    partial = store.get(info.id)
    assert len(partial.finished_shards("heads")) == 3 and "extraction" in partial.json_files()
    run = run_function_vectors(config, store, resume=info.id)
    assert run.status == "finished" and run.id == info.id
    assert_same_tables(run, local_run)
