"""The validation harness, its run in the store, figures, the config and the CLI command."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

import interp
from interp.attribution import (
    METHODS,
    AttributionResult,
    MethodOptions,
    RelPRules,
    SweepRequest,
    agreement,
    atp,
    compare,
    load_comparison,
    record,
)
from interp.attribution.cli import attribute
from interp.attribution.config import AttributionConfig
from interp.config import ConfigError, load_config
from interp.patching.persist import load_result, save_result
from interp.models.tiny import TINY_MODELS
from interp.runs import FINISHED, RunStore
from interp.tasks import ioi_task
from interp.viz.attribution import comparison_scatter, correlation_bars, scatter
from interp.viz.patching import heatmap

TINY_CONFIG = """
model: tiny-llama
task: {kind: ioi, n: 3, seed: 0}
methods: [atp, atp+qk, atp*, relp, ig]
sweeps:
  - {sweep: resid_pre, layers: [0, 2]}
  - {sweep: head_k, layers: [1]}
  - {sweep: neuron, layers: [2], neurons: [1, 2, 3, 4]}
ig: {steps: 3}
relp: {attention: cp}
"""



def test_compare_reports_agreement_and_round_trips_through_the_store(tmp_path: Path) -> None:
    model = interp.load_model("tiny-gpt2", dtype=torch.float64)
    task = ioi_task(model, n=3, seed=0)
    last = model.dims.n_layers - 1
    sweeps = [SweepRequest("resid_post", layers=[last]), SweepRequest("head_z", layers=[0, 1])]
    seen: list[str] = []
    comparison = compare(model, task, sweeps, ["atp", "atp*", "relp", "ig"], top_k=3,
                         options=MethodOptions(relp_rules=RelPRules.none(), ig_steps=2), progress=seen.append)
    assert seen == ["exact resid_post", "exact head_z", "atp", "atp*", "relp", "ig"]
    table = comparison.to_frame()
    assert set(table.columns) >= {"component", "method", "pearson", "spearman", "recall", "sign_agreement",
                                  "forward_passes", "backward_passes", "seconds", "exact_forward_passes"}
    row = table[(table.component == "resid_post") & (table.method == "atp")].iloc[0]
    # the last residual stream reaches the logits through the final LayerNorm only: close to linear
    assert row.pearson > 0.9 and row.forward_passes == 2 and row.backward_passes == 1
    assert row.exact_forward_passes > row.forward_passes
    assert comparison.pearson().shape == (2, 4)

    run = record(comparison, RunStore(tmp_path), {"demo": True}, task)
    assert run.status == FINISHED and run.kind == "attribution"
    again = load_comparison(run)
    assert list(again.estimates) == ["atp", "atp*", "relp", "ig"]
    for method, results in comparison.estimates.items():
        for sweep, result in results.items():
            loaded = again.estimates[method][sweep]
            assert isinstance(loaded, AttributionResult) and loaded.method == result.method
            torch.testing.assert_close(loaded.values, result.values)
            assert (loaded.scores is None) == (result.scores is None)
    assert run.manifest["summary"]["resid_post/atp"] == pytest.approx(row.pearson, abs=1e-4)
    figure = comparison_scatter(again, "head_z")
    assert len(figure.data) == 5 and "r =" in figure.data[0].name
    assert len(correlation_bars(table).data) == 4


def test_agreement_numbers_on_a_known_case() -> None:
    model = interp.load_model("tiny-llama", dtype=torch.float64)
    task = ioi_task(model, n=2, seed=1)
    estimate = atp(model, task, "mlp_out")
    exact = estimate.__class__(**{**vars(estimate)})
    perfect = agreement(exact, estimate, top_k=5)
    assert perfect["pearson"] == pytest.approx(1.0) and perfect["spearman"] == pytest.approx(1.0)
    assert perfect["recall"] == 1.0 and perfect["sign_agreement"] == 1.0
    flipped = AttributionResult(**{**vars(estimate), "values": 2 * estimate.base.view(-1, 1, 1) - estimate.values})
    opposite = agreement(exact, flipped, top_k=5)
    assert opposite["pearson"] == pytest.approx(-1.0) and opposite["sign_agreement"] == 0.0
    assert opposite["recall"] == 1.0
    with pytest.raises(ValueError, match="grid"):
        agreement(exact, atp(model, task, SweepRequest("mlp_out", layers=[0])))


def test_attribution_results_work_with_patching_tools(tmp_path: Path) -> None:
    model = interp.load_model("tiny-qwen3")
    task = ioi_task(model, n=2, seed=2)
    result = atp(model, task, "head_z_by_pos")
    figure = heatmap(result, fixed={"layer": 1})
    assert figure.data[0].z.shape == (model.dims.n_heads, task.clean.shape[1])
    assert len(result.to_frame()) == result.values.numel()
    run = RunStore(tmp_path).create(kind="attribution", config={}, model="tiny-qwen3")
    save_result(run, "estimate", result)
    plain = load_result(run, "estimate")
    torch.testing.assert_close(plain.values, result.values)
    exact_fig = scatter(plain, [result])
    assert math.isclose(float(exact_fig.data[0].name.split("= ")[1].rstrip(")")), 1.0, abs_tol=1e-3)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("sweeps: [{sweep: resid_pre}]\nmethods: [atp, magic]\n")
    with pytest.raises(ConfigError, match="magic"):
        load_config(path, AttributionConfig)
    path.write_text("sweeps: [{sweep: resid_pre}]\nig: {stepz: 3}\n")
    with pytest.raises(ConfigError, match="ig.stepz"):
        load_config(path, AttributionConfig)
    path.write_text("sweeps: [{sweep: resid_pre}, {sweep: resid_pre}]\n")
    with pytest.raises(ConfigError, match="more than once"):
        load_config(path, AttributionConfig)
    shipped = load_config(Path(__file__).resolve().parents[2] / "data" / "ioi_attribution.yaml", AttributionConfig)
    assert shipped.task.n >= 32 and shipped.methods


def test_cli_command_runs_a_config_into_the_store(tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(attribute)
    app.command("noop")(lambda: None)
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG)
    result = CliRunner().invoke(app, ["attribute", str(config), "--dtype", "float64", "--runs", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "attribution vs exact patching" in result.output
    runs = RunStore(tmp_path / "runs").list(kind="attribution")
    assert len(runs) == 1 and runs[0].status == FINISHED
    comparison = load_comparison(RunStore(tmp_path / "runs").get(runs[0].id))
    assert len(comparison.table) == 3 * 5
    bad = CliRunner().invoke(app, ["attribute", str(tmp_path / "missing.yaml")])
    assert bad.exit_code == 2 and "not exist" in " ".join(bad.output.split())


@pytest.mark.parametrize("name", TINY_MODELS)
def test_every_method_runs_on_every_family(name: str) -> None:
    model = interp.load_model(name)
    task = ioi_task(model, n=2, seed=3)
    sweeps = [SweepRequest("resid_pre", layers=[1]), SweepRequest("head_k_by_pos", layers=[2], positions=[-1, -2]),
              SweepRequest("neuron", layers=[0], neurons=[5, 6])]
    comparison = compare(model, task, sweeps, METHODS, options=MethodOptions(ig_steps=2))
    for results in comparison.estimates.values():
        for result in results.values():
            assert torch.isfinite(result.values).all()
            assert result.scores is None or torch.isfinite(result.scores).all()
    assert comparison.table["recall"].between(0, 1).all()


@pytest.mark.slow
def test_default_model_smoke(smollm: interp.Model) -> None:
    """Every method on the default model (8 IOI pairs, a few cells): AtP tracks exact patching."""
    torch.manual_seed(0)
    task = ioi_task(smollm, n=8, seed=0)
    sweeps = [SweepRequest("attn_out", layers=[20, 25]), SweepRequest("head_q", layers=[25])]
    comparison = compare(smollm, task, sweeps, METHODS, options=MethodOptions(ig_steps=2))
    pearson = comparison.pearson()
    assert pearson.loc["attn_out", "atp"] > 0.9
    assert pearson.loc["head_q", "atp+qk"] > 0.8
