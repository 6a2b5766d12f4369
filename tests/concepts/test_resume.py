"""``interp tcav --resume``: an interrupted run continues from its finished stages and ends as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from interp.concepts import runner
from interp.concepts.config import TCAVConfig
from interp.config import load_config
from interp.runs import ConfigMismatchError, Progress, RunStore
from interp.vectors import load_vectors
from tests.concepts.test_cli import tiny_config

TABLES = ("scores", "tests", "examples", "steer", "gcav", "gcav_variance", "nmf_top")


class Interrupted(Exception):
    """Raised inside a stage to stop a run part-way, as a killed process would."""


def counting(monkeypatch: pytest.MonkeyPatch, calls: dict[str, int], name: str) -> None:
    original = getattr(runner, name)

    def counted(*args, **kwargs):
        calls[name] = calls.get(name, 0) + 1
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, name, counted)


def test_an_interrupted_run_resumes_without_recomputing_its_finished_stages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(tiny_config(tmp_path), TCAVConfig)
    whole, _ = runner.run_config(config, RunStore(tmp_path / "whole"))

    store = RunStore(tmp_path / "resumed")
    with monkeypatch.context() as patch:
        def interrupt(*args, **kwargs):
            raise Interrupted("stopped before GCAV")

        patch.setattr(runner, "gcav", interrupt)
        with pytest.raises(Interrupted):
            runner.run_config(config, store)
    stopped = store.list(kind="tcav")[0]
    assert stopped.status == "failed"
    # one concept: activations, gradients, 2 CAV groups (french, the null), significance, 1 steer, GCAV, NMF
    assert whole.progress == Progress(8, 8, "stages", "NMF")
    assert stopped.progress == Progress(6, 8, "stages", "steering")  # recorded as it went, up to the failure
    assert RunStore(tmp_path / "resumed").get(stopped.id).tables() == sorted(["scores", "tests", "examples", "steer"])

    with pytest.raises(ConfigMismatchError, match="n_permutations"):
        runner.run_config(config.model_copy(update={"n_permutations": 60}), store, resume=stopped.id)

    calls: dict[str, int] = {}
    for name in ("read_sets", "sensitivities", "concept_cavs", "score", "steer_effect", "gcav", "read_layers"):
        counting(monkeypatch, calls, name)
    run, result = runner.run_config(config, store, resume="latest")
    assert run.id == stopped.id and run.status == "finished" and run.progress == whole.progress
    # only the stages after the interruption ran again: GCAV and NMF (which reads one layer)
    assert calls == {"gcav": 1, "read_layers": 1}

    for table in TABLES:
        pd.testing.assert_frame_equal(run.read_table(table), whole.read_table(table), check_exact=True)
    assert run.read_json("settings") == whole.read_json("settings")
    assert run.read_json("nmf") == whole.read_json("nmf")
    pd.testing.assert_frame_equal(result.tests, whole.read_table("tests"), check_exact=True)
    for name in ("french", "random"):
        a, b = load_vectors(run.path / "cavs" / name), load_vectors(whole.path / "cavs" / name)
        assert a.vectors.equal(b.vectors) and a.meta == b.meta
    assert load_vectors(run.path / "gcavs" / "french").vectors.equal(load_vectors(whole.path / "gcavs" / "french").vectors)
    assert len(result.cavs["french"]) == config.n_random and result.sens.grads.shape[0] == 2

    # a finished run resumed again recomputes nothing
    calls.clear()
    runner.run_config(config, store, resume=stopped.id)
    assert calls == {}


def test_the_staged_runner_equals_run_tcav_in_one_call(tmp_path: Path) -> None:
    from interp.concepts import TokenSelector, load_concept, load_target, run_tcav
    from interp.models import load_model

    config = load_config(tiny_config(tmp_path), TCAVConfig).model_copy(update={"steer": None, "gcav": None, "nmf": None})
    run, _ = runner.run_config(config, RunStore(tmp_path / "runs"))
    model = load_model(config.model)
    result = run_tcav(
        model, [load_concept(c.path, c.name) for c in config.concepts], load_concept(config.random, "random_pool"),
        load_target(model, config.target.path, config.target.metric), config.kind, config.layers,
        TokenSelector(config.selector), config.classifier, config.n_random, config.random_size, config.balance,
        config.alpha, config.test_fraction, config.n_permutations, config.level, config.seed, config.design,
        config.batch_size,
    )
    for table in ("scores", "tests", "examples"):
        pd.testing.assert_frame_equal(run.read_table(table), getattr(result, table), check_exact=True)
    assert run.read_json("settings") == result.settings
