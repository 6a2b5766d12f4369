"""``train``: from a config to a finished run holding SAEs, metrics and feature statistics.

The steps, each in its own module:

1. load the model and pack the token source (:mod:`interp.sae.tokens`), holding out
   ``data.eval_rows`` rows;
2. build the activation store over the training rows, filling or reusing the disk cache
   (:mod:`interp.sae.store`);
3. create a run of kind ``"sae"`` in the results store, or continue one (``resume``, see
   :mod:`interp.runs.lifecycle`: the config must be identical, and training continues from the
   run's last checkpoint, bit for bit);
4. train every SAE in one pass (:mod:`interp.sae.trainer`) with a progress bar showing each SAE's
   L0 and FVU, checkpointing into the run every ``checkpoint_every`` steps;
5. on the held-out rows: metrics (:mod:`interp.sae.metrics`) and feature statistics
   (:mod:`interp.sae.features`);
6. save each SAE in SAELens's layout under ``<run>/saes/<name>/`` (with ``sparsity.safetensors``),
   so ``interp.sae.load(run.path / "saes" / name)`` gives it back.

What the run holds: ``checkpoint.safetensors``, ``train_log.parquet`` (one row per SAE and step),
``metrics.parquet`` and ``metrics.json``, ``eval_tokens.safetensors`` (the held-out rows' corpus
indices, token ids and kept positions; feature statistics index these rows),
``features-<name>.safetensors``/``.parquet``, ``vocab-<name>.parquet``, and ``saes/<name>/``; the manifest's summary has each SAE's L0, FVU,
CE recovered and dead fraction.

Under ``torchrun --nproc-per-node N`` the same function trains data-parallel
(:mod:`interp.sae.parallel`): every process steps on its part of each batch, rank 0 writes the run;
the run resumes under any number of processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from interp.models import load_model
from interp.runs import Run, RunStore, lifecycle
from interp.sae.config import TrainConfig
from interp.sae.features import feature_stats, save_features
from interp.sae.io import save_sae
from interp.sae.metrics import evaluate
from interp.sae.parallel import Group, data_parallel
from interp.sae.sae import SAE, SAEConfig
from interp.sae.store import ActivationStore, StoreError
from interp.sae.tokens import load_tokens, split_rows
from interp.sae.trainer import SAETrainer, StepStats

RUN_KIND = "sae"
CHECKPOINT = "checkpoint"
TRAIN_LOG = "train_log"
STEPS = "training steps"  # the unit of the run's recorded progress


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_saes(config: TrainConfig, model, store: ActivationStore) -> dict[str, SAE]:
    """Freshly initialised SAEs for every spec, with the metadata SAELens files carry."""
    source = config.data.source.model_dump()
    saes = {}
    for spec in config.saes:
        metadata = {
            "context_size": config.data.context_size,
            "prepend_bos": config.data.prepend_bos,
            "dataset_path": source.get("kind") if source.get("kind") == "demo" else str(source),
            "exclude_special_tokens": config.data.exclude_special_tokens,
            "skip_first_positions": config.data.skip_first_positions,
            "hf_hook_name": model.arch.module_path(model.site(spec.site)),
        }
        sae_config = SAEConfig(
            d_in=store.d[spec.site],
            d_sae=spec.d_sae,
            activation=spec.activation,
            normalize_activations=spec.normalize_activations,
            site=spec.site,
            model=model.name,
            metadata=metadata,
        )
        saes[spec.name] = SAE.create(sae_config, seed=config.seed * 1000 + spec.seed)
    return saes


def _log_frame(trainer: SAETrainer, first_step: int, previous: pd.DataFrame | None) -> pd.DataFrame:
    rows = []
    for name, slot in trainer.slots.items():
        for offset, stat in enumerate(slot.history):
            rows.append({"sae": name, "step": first_step + offset, **stat.__dict__})
    frame = pd.DataFrame(rows, columns=["sae", "step", "loss", "fvu", "auxk", "l0", "dead_fraction", "lr"])
    if previous is not None and len(previous):
        frame = pd.concat([previous[previous["step"] < first_step], frame], ignore_index=True)
    return frame.sort_values(["sae", "step"], kind="stable").reset_index(drop=True)


class _ProgressView:
    """A rich progress bar whose description shows each SAE's smoothed L0 and FVU."""

    def __init__(self, total: int, completed: int, batch_size: int, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("[bold]SAE[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self.task = self.progress.add_task("train", total=total, completed=completed, rate="", stats="")
        self.batch_size = batch_size
        self.smoothed: dict[str, tuple[float, float, float]] = {}
        self.started = time.perf_counter()
        self.first = completed

    def update(self, step: int, stats: dict[str, StepStats]) -> None:
        for name, s in stats.items():
            old = self.smoothed.get(name, (s.loss, s.l0, s.fvu))
            self.smoothed[name] = tuple(0.9 * o + 0.1 * n for o, n in zip(old, (s.loss, s.l0, s.fvu), strict=True))
        text = " | ".join(f"{n}: loss {v[0]:.3f} L0 {v[1]:.1f} FVU {v[2]:.3f}" for n, v in self.smoothed.items())
        rate = (step - self.first) * self.batch_size / max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(self.task, completed=step, stats=text, rate=f"{rate:,.0f} tok/s")


def train(
    config: TrainConfig,
    runs: RunStore,
    resume: str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    log: Callable[[str], None] = print,
) -> Run:
    """Train the config's SAEs and return the run (see the module docstring).

    ``resume`` continues a run from its last checkpoint (an id, or ``"latest"``: see
    :mod:`interp.runs.lifecycle`). ``stop_after`` ends training after that many steps
    as an interruption would (checkpoint written, run left ``running``), to be resumed later.
    """
    with data_parallel(_device(config.device)) as group:
        return _train(config, runs, resume, progress and group.leader, stop_after, log if group.leader else _quiet, group)


def _quiet(message: str) -> None:
    """Drops a log line: only rank 0 prints."""


def _train(
    config: TrainConfig,
    runs: RunStore,
    resume: str | None,
    progress: bool,
    stop_after: int | None,
    log: Callable[[str], None],
    group: Group,
) -> Run:
    device = group.device
    if config.store.batch_size % group.world:
        raise StoreError(
            f"store.batch_size {config.store.batch_size} does not split evenly over {group.world} processes; "
            "choose a batch size divisible by --nproc-per-node"
        )
    model = load_model(config.model, device=device, dtype=getattr(torch, config.model_dtype))
    tokens = load_tokens(config.data.source, model.tokenizer, config.data.context_size, config.data.prepend_bos)
    if config.data.max_rows is not None:
        tokens = tokens.head(config.data.max_rows)
    train_rows, eval_rows = split_rows(tokens.n_rows, config.data.eval_rows, config.data.split_seed)
    sites = list(dict.fromkeys(spec.site for spec in config.saes))
    with_grads = any(spec.activation.kind == "gsae" for spec in config.saes)
    cache_note = {"last": -1.0}

    def cache_progress(done: int, total: int) -> None:
        if progress and (done == total or time.monotonic() - cache_note["last"] > 10):
            cache_note["last"] = time.monotonic()
            log(f"caching activations: {done}/{total} rows")

    if not group.leader:
        group.barrier()  # rank 0 builds the disk cache; the others open it once it is complete
    store = ActivationStore(
        model,
        sites,
        tokens,
        train_rows,
        batch_size=config.store.batch_size,
        buffer_rows=config.store.buffer_rows,
        model_batch_size=config.store.model_batch_size,
        seed=config.seed,
        exclude_special=config.data.exclude_special_tokens,
        skip_first=config.data.skip_first_positions,
        with_grads=with_grads,
        cache=config.store.cache,
        cache_dir=config.store.cache_dir,
        cache_dtype=config.store.cache_dtype,
        progress=cache_progress,
    )
    if group.leader:
        group.barrier()
    dataset = config.data.source.model_dump()
    if not group.leader:
        return _follow(config, runs, model, store, group, stop_after)
    with lifecycle(runs, RUN_KIND, config.to_json(), model=model.name, dataset=dataset, resume=resume) as run:
        group.share(run.id)
        saes = build_saes(config, model, store)
        trainer = SAETrainer(saes, config.optim, config.total_steps, device, distributed=group.distributed)
        previous_log = None
        if CHECKPOINT in run.tensor_files():
            trainer.load_state_tensors(run.read_tensors(CHECKPOINT))
            previous_log = run.read_table(TRAIN_LOG) if TRAIN_LOG in run.tables() else None
        first_step = trainer.step_index
        end = config.total_steps if stop_after is None else min(config.total_steps, stop_after)
        run.set_progress(first_step, config.total_steps, STEPS, tokens_per_epoch=store.tokens_per_epoch)

        def checkpoint(t: SAETrainer) -> None:
            run.write_tensors(CHECKPOINT, t.state_tensors())
            run.write_table(TRAIN_LOG, _log_frame(t, first_step, previous_log))
            run.set_progress(t.step_index, config.total_steps, STEPS, tokens_per_epoch=store.tokens_per_epoch)

        view = _ProgressView(config.total_steps, first_step, config.store.batch_size, progress)
        started = time.perf_counter()
        with view.progress:
            batches = store.batches(first_step, end, group.rank, group.world)
            trainer.fit(batches, view.update, checkpoint, config.checkpoint_every)
        seconds = time.perf_counter() - started
        if trainer.step_index > first_step:
            checkpoint(trainer)
        if trainer.step_index < config.total_steps:
            log(f"stopped at step {trainer.step_index}/{config.total_steps}; resume with run id {run.id}")
            return run
        summary = finish(config, run, model, store, trainer.saes, eval_rows, log)
        summary["train_seconds"] = seconds
        summary["train_tokens_per_second"] = (trainer.step_index - first_step) * config.store.batch_size / max(seconds, 1e-9)
        run.finish(summary=summary)
    return run


def _follow(config: TrainConfig, runs: RunStore, model, store: ActivationStore, group: Group, stop_after: int | None) -> Run:
    """A process other than rank 0: train its part of each batch in step with rank 0, write nothing."""
    run = runs.get(group.share(None))
    saes = build_saes(config, model, store)
    trainer = SAETrainer(saes, config.optim, config.total_steps, group.device, distributed=True)
    if CHECKPOINT in run.tensor_files():  # read before rank 0 can write another: that needs this process's steps
        trainer.load_state_tensors(run.read_tensors(CHECKPOINT))
    end = config.total_steps if stop_after is None else min(config.total_steps, stop_after)
    trainer.fit(store.batches(trainer.step_index, end, group.rank, group.world))
    return run


def finish(config: TrainConfig, run: Run, model, store: ActivationStore, saes: dict[str, SAE], eval_rows, log) -> dict:
    """Metrics, feature statistics and SAELens-format SAEs into the run; returns the summary."""
    for sae in saes.values():
        sae.eval()
    ids = store.tokens.rows(eval_rows)
    keep = store.keep_mask(ids)
    acts, _ = store.row_activations(eval_rows)
    run.write_tensors("eval_tokens", {"row_index": torch.as_tensor(eval_rows), "token_ids": ids, "keep": keep})
    log(f"evaluating on {int(keep.sum())} held-out tokens ({len(eval_rows)} rows)")
    results = evaluate(model, saes, ids, keep, batch_rows=config.store.model_batch_size, acts=acts)
    frame = pd.DataFrame([{"sae": name, **metrics.to_dict()} for name, (metrics, _) in results.items()])
    run.write_table("metrics", frame)
    run.write_json("metrics", {name: metrics.to_dict() for name, (metrics, _) in results.items()})
    for name, sae in saes.items():
        density = results[name][1]
        save_sae(sae, run.path / "saes" / name, sparsity=torch.log10(density + 1e-10))
        if config.features.enabled:
            step = config.store.model_batch_size
            batches = [
                (acts[sae.site][i : i + step], ids[i : i + step], keep[i : i + step]) for i in range(0, len(eval_rows), step)
            ]
            features = config.features
            stats = feature_stats(sae, model, batches, features.top_k, features.context, features.n_logits,
                                  features.intervals, features.per_interval, seed=config.seed)
            save_features(run, name, stats, model.tokenizer)
    return {
        name: {key: metrics.to_dict()[key] for key in ("l0", "fvu", "ce_recovered", "dead_fraction", "n_tokens")}
        for name, (metrics, _) in results.items()
    }
