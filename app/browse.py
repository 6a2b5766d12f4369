"""What every page of the app shares: where the runs are, picking a run, and reading it safely.

The app only ever *reads* runs (through :mod:`interp.runs`); its single write is deleting a run on
the overview page, after confirmation, through :meth:`RunStore.delete`. Every read that can fail on
a half-written or damaged run goes through :func:`reading`, which turns the failure into a message
on the page instead of a traceback, and every page starts from :func:`choose_run`, which says
plainly when the store is empty, when a run is still being written, when it failed, and when its
manifest is unreadable; a running run's progress, as its writer records it in the manifest
(:mod:`interp.runs.progress`), is shown the same way on every page.

The store's root is ``--runs DIR`` after the script's ``--`` (``streamlit run app/Home.py -- --runs
DIR``, which ``interp app --runs DIR`` runs), else ``$INTERP_RUNS_DIR``, else ``./data/runs``.

Loaded results are cached per process with :func:`streamlit.cache_resource` (no copies: pages
never modify them), keyed by the run path, the artefact name and the files' modification times, so
a result rewritten by a resumed run is read afresh.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from interp.runs import CORRUPT, FAILED, RUNNING, Run, RunInfo, RunStore, default_runs_root

PAGES = {
    "patching": "views/patching.py",
    "attribution": "views/attribution.py",
    "sae": "views/sae.py",
    "steering": "views/steering.py",
    "dac": "views/steering.py",
    "function_vectors": "views/function_vectors.py",
    "feature_circuit": "views/features.py",
    "tcav": "views/concepts.py",
}
MAKE_RUNS = {
    "patching": "interp patch data/ioi_demo.yaml",
    "attribution": "interp attribute data/ioi_attribution.yaml",
    "sae": "interp sae train data/sae_topk.yaml",
    "feature_circuit": "interp attribute data/feature_circuit_demo.yaml --set sae_run=SAE_RUN_ID",
    "steering": "interp steer data/steer_demo.yaml",
    "dac": "interp steer data/dac_demo.yaml",
    "tcav": "interp tcav data/tcav_demo.yaml",
    "function_vectors": "interp steer data/function_vectors_demo.yaml",
}
RUN_PARAM = "run"


def runs_root() -> Path:
    """The store's root: ``--runs`` among the script's arguments, else the library's default."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--runs", type=Path, default=None)
    known, _ = parser.parse_known_args(sys.argv[1:])
    return known.runs.expanduser().absolute() if known.runs is not None else default_runs_root()


def store() -> RunStore:
    return RunStore(runs_root())


def stop_with(message: str, level: str = "error") -> None:
    """Show ``message`` (``"error"``, ``"warning"`` or ``"info"``) and end the page here."""
    getattr(st, level)(message)
    st.stop()


@contextmanager
def reading(what: str, run: Run | None = None) -> Iterator[None]:
    """Turn any failure while reading ``what`` into a message that ends the page.

    A run still being written is expected to lack files, so its message says to wait rather than
    calling the run broken.
    """
    try:
        yield
    except Exception as error:  # noqa: BLE001 - whatever a damaged file raises must become a message
        detail = f"{type(error).__name__}: {error}"
        if run is not None and _status(run) == RUNNING:
            stop_with(
                f"Run `{run.id}` is still being written and its {what} is not readable yet ({detail}). "
                "Reload the page when it has progressed.",
                "warning",
            )
        stop_with(f"Cannot read the {what} of this run: {detail}")


def _status(run: Run) -> str:
    try:
        return run.status
    except Exception:  # noqa: BLE001 - an unreadable manifest, whatever the error, is what "corrupt" means
        return CORRUPT


def stamp(run: Run, *files: str) -> tuple[int, ...]:
    """Modification times of a run's files (0 for a missing one): the cache key of what they hold."""
    stamps = []
    for name in files:
        try:
            stamps.append(os.stat(run.path / name).st_mtime_ns)
        except OSError:
            stamps.append(0)
    return tuple(stamps)


def model_label(info: RunInfo) -> str:
    model = info.model
    return str(model.get("name", model)) if isinstance(model, dict) else str(model)


def run_label(info: RunInfo) -> str:
    """One line naming a run in a picker: id, model, status."""
    return f"{info.id}  ·  {model_label(info)}  ·  {info.status}"


def choose_run(kind: str, label: str = "Run", key: str | None = None) -> tuple[Run, RunInfo]:
    """A picker over the store's runs of ``kind`` (newest first, ``?run=ID`` preselected); shows the
    run's status and stops the page with a clear message when there is nothing to show."""
    runs = store()
    infos = runs.list(kind)
    if not infos:
        stop_with(
            f"No {kind} runs in `{runs.root}` yet. Make one with `{MAKE_RUNS.get(kind, 'interp ...')} "
            f"--runs {runs.root}`, or point the app at another store with `interp app --runs DIR`.",
            "info",
        )
    ids = [info.id for info in infos]
    # ?run= names the run; sidebar navigation drops the query, so the session remembers the last one
    wanted = st.query_params.get(RUN_PARAM) or st.session_state.get(f"last-run-{kind}")
    by_id = {info.id: info for info in infos}
    chosen = st.selectbox(
        label, ids, index=ids.index(wanted) if wanted in by_id else 0, format_func=lambda i: run_label(by_id[i]),
        key=key or f"run-{kind}",
    )
    if key is None:
        st.session_state[f"last-run-{kind}"] = chosen
        if st.query_params.get(RUN_PARAM) != chosen:
            st.query_params[RUN_PARAM] = chosen
    info = by_id[chosen]
    show_status(info)
    return Run(info.path), info


def show_status(info: RunInfo) -> None:
    """Say what state a run is in; stop the page for a corrupt run."""
    if info.status == CORRUPT:
        stop_with(
            f"Run `{info.id}` cannot be read: {info.error}. Nothing in it can be shown; "
            "you can delete it on the Runs page."
        )
    if info.status == RUNNING:
        st.warning(
            f"Run `{info.id}` is still being written (started {info.created}). Showing what it has "
            "finished so far; reload the page to see more.",
            icon=":material/hourglass_top:",
        )
        if info.progress is not None:
            st.progress(info.progress.fraction, text=f"running: {info.progress.describe()}")
    if info.status == FAILED:
        last_line = (info.error or "no error recorded").strip().splitlines()[-1]
        reached = f" (it had finished {info.progress.describe()})" if info.progress is not None else ""
        st.error(f"Run `{info.id}` failed: {last_line}. Showing whatever it finished before failing{reached}.")
        if info.error and "\n" in info.error.strip():
            with st.expander("The error the run recorded"):
                st.code(info.error, language=None)


def url_value(page: str, name: str) -> str | None:
    """A page's state in its URL (``?layer=3``), else what this session last kept for the page.

    Pages write what a reader chose with :func:`keep_in_url`, so an address can be shared and
    reopens the same view, and moving between pages with the sidebar (which drops the query)
    returns to it.
    """
    value = st.query_params.get(name)
    return value if value is not None else st.session_state.get(f"url-{page}", {}).get(name)


def keep_in_url(page: str, **values: object) -> None:
    """Put ``values`` in the page's address and remember them for this session (None removes one)."""
    kept = st.session_state.setdefault(f"url-{page}", {})
    for name, value in values.items():
        if value is None:
            kept.pop(name, None)
            if name in st.query_params:
                del st.query_params[name]
            continue
        kept[name] = str(value)
        if st.query_params.get(name) != str(value):
            st.query_params[name] = str(value)


HELP = {
    "patching": """
**Activation patching** runs the model on one prompt while forcing one component (a *cell*) to the value
it takes on another prompt, then reads a metric (here usually `logit_diff`, the answer's logit minus the
wrong token's).

* **Denoising** patches clean activations into the corrupt run: a cell that brings back the clean
  behaviour is *sufficient*. Normalised value: 0 = no effect, 1 = fully restores.
* **Noising** patches corrupt activations into the clean run: a cell whose patch destroys the behaviour
  is *necessary*. Normalised value: 1 = no effect, 0 = fully destroys.
* **Effect** = patched metric minus the unpatched base run's (0 = no effect in both directions).

Sites: `resid_pre` is the residual stream entering a block (a layer x position map shows where the
information sits); `attn_out` / `mlp_out` are one block's attention / MLP output; `head_z` is one
attention head's output before the output projection (a layer x head map finds the heads that matter);
`*_by_pos` adds a position axis. **Named positions** (`S1`, `IO`, `S2`, `END`, ...) patch each example at
its own token for the name; raw positions are batch columns.
""",
    "attribution": """
**Attribution patching** estimates every cell of a patching sweep from one forward and one backward pass
instead of one forward per cell, and this page checks it against the exact sweep.

* **AtP** (Nanda 2023; Kramar et al. 2024): effect ~ (source - base activation) . gradient of the metric.
  Linear, so it misses saturated attention and cancelling effects.
* **AtP\\*** fixes two failure modes: it recomputes attention softmaxes for query/key cells (QK fix) and
  ranks cells by GradDrop, the mean |estimate| over gradients taken with one block's write into the
  residual stream held fixed (a direct and an indirect effect that cancel in the plain gradient still count). Its *estimates* are AtP's
  (apart from the QK fix); its *ranking* uses the GradDrop score, so AtP and AtP\\* can share numbers
  in the scatter but rank components differently in the top-k recall.
* **RelP** replaces gradients with relevance propagation rules (LRP), steadier through nonlinearities.
* **IG** (integrated gradients) averages gradients along the path from base to source activation.

Heatmaps show effects (patched minus base, 0 = no effect) on a colour scale centred on 0.
""",
    "sae": """
A **sparse autoencoder** writes a site's activation as a sparse sum of learned directions (*latents*).

* **L0**: latents firing per token. **FVU**: fraction of variance unexplained by the reconstruction
  (0 is perfect). **CE loss recovered**: how much of the language-model loss gap between zero-ablating
  the site and the clean model the reconstruction closes (1 = as good as the model).
* **Density**: the fraction of held-out tokens a latent fires on; **dead** latents never fire.
* A latent's **top logits** are the tokens its decoder direction promotes through the unembedding.
""",
    "model": """
Type a prompt: the next-token distribution, the **logit lens** (the residual stream after each layer read
through the final norm and unembedding: what the model "would say" there) and one head's **attention
pattern** (row: the query token; column: the token it attends to). A heatmap cell's link opens a head
here on the example's prompt; an SAE latent's link runs the latent on your text.
""",
}


def page_help(page: str) -> None:
    """A short explanation of what the page shows and the methods behind it, folded away."""
    with st.expander("What this page shows", icon=":material/help:"):
        st.markdown(HELP[page])


def show_config(run: Run) -> None:
    """The run's full config, as it was validated and stored."""
    with st.expander("Run config (everything the run was made with)", icon=":material/settings:"):
        st.json(run.config, expanded=True)
