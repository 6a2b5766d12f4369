"""Attribution vs exact patching: how well AtP, AtP*, RelP and IG agree with exact activation patching.

The method x component-type table of Pearson r (and the full agreement table: Spearman, top-k
recall, sign agreement, cost) is the one the attribution harness stored; the scatter puts each
method's estimated effect of every cell against the exact effect (:func:`interp.viz.attribution.scatter`),
and the heatmaps show the exact sweep next to one method's estimate on the same colour scale. The
recall-against-cost curves (:mod:`interp.attribution.recall`) show how many exact patches each
method's ranking needs to find the true top components, with the false-negative bound.

A run still being written (or one that failed) shows the stages it has stored: the exact sweeps
alone until a method has finished, then the methods finished so far.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from browse import choose_run, page_help, reading, show_config, stamp

from interp.attribution import Comparison, load_comparison
from interp.attribution.recall import recall_summary
from interp.runs import FINISHED, RUNNING, Run
from interp.viz.attribution import correlation_bars, method_sort_key, recall_cost, scatter
from interp.viz.patching import compare, heatmap

RUN_FILES = ("comparison.json", "comparison.parquet")


@st.cache_resource(max_entries=8, show_spinner=False)
def _load(path: str, version: tuple[int, ...]) -> Comparison:
    return load_comparison(Run(path))


def stored_so_far(comparison: Comparison, config: dict[str, Any]) -> str | None:
    """Which of the run's stages (an exact sweep per component type, then each method) are stored, or
    None for a run whose config plans no stages (a comparison recorded from Python)."""
    sweeps = [s.get("sweep") for s in config.get("sweeps", []) if isinstance(s, dict)]
    methods = [m for m in config.get("methods", []) if isinstance(m, str)]
    if not sweeps or not methods:
        return None
    done = [f"exact {s}" for s in sweeps if s in comparison.exact] + [m for m in methods if m in comparison.estimates]
    waiting = [f"exact {s}" for s in sweeps if s not in comparison.exact] + [m for m in methods if m not in comparison.estimates]
    return (f"{len(done)} of {len(done) + len(waiting)} stages stored: {', '.join(done) or 'none'}; "
            f"not yet: {', '.join(waiting) or 'none'}.")


def show_exact_only(comparison: Comparison, run_id: str) -> None:
    """A run that has stored exact sweeps but no method yet: the exact effects, one component type at a time."""
    st.info("No method has been compared with exact patching yet; the exact sweeps stored so far are below. "
            "Reload the page when a method has finished.")
    component = st.selectbox("Component type", list(comparison.exact), key=f"exact-only-{run_id}")
    exact = comparison.exact[component]
    if len(exact.axes) != 2:
        st.caption(f"{component} has axes {list(exact.axes)}: no single heatmap.")
        return
    figure = heatmap(exact, normalized=False, quantity="effect", title=f"exact {component}")
    figure.update_layout(height=max(420, 20 * len(exact.coords[exact.axes[0]]) + 180))
    st.plotly_chart(figure, key=f"exact-only-fig-{run_id}-{component}")


st.title("Attribution vs exact patching")
run, info = choose_run("attribution")
page_help("attribution")
show_config(run)
if info.status == RUNNING and "comparison" not in run.json_files():
    st.info("This run has not stored its comparison yet: no stage has finished. Reload the page when it has progressed.")
    st.stop()
with reading("comparison", run):
    comparison = _load(str(run.path), stamp(run, *RUN_FILES))

meta = comparison.meta
st.markdown(
    f"**model** `{meta.get('model', '?')}` · **task** `{meta.get('task', '?')}` ({meta.get('examples', '?')} examples) · "
    f"**metric** `{meta.get('metric', '?')}` · **direction** `{meta.get('direction', '?')}` · "
    f"**top-k for recall** {meta.get('top_k', '?')}"
)
stored = stored_so_far(comparison, run.config) if info.status != FINISHED else None
if stored is not None:
    st.caption(f"Partial results: {stored}")
if comparison.table.empty:
    show_exact_only(comparison, run.id)
    st.stop()

st.subheader("Pearson r with exact patching (method x component type)")
pearson = comparison.pearson()
st.dataframe(
    pearson[sorted(pearson.columns, key=method_sort_key)] if set(pearson.columns) <= set(comparison.estimates) else pearson,
    column_config={method: st.column_config.NumberColumn(method, format="%.3f") for method in comparison.estimates},
)
st.plotly_chart(correlation_bars(comparison.to_frame()), key=f"bars-{run.id}")
with st.expander("Full agreement table: Spearman r, top-k recall, sign agreement, cost"):
    st.dataframe(comparison.to_frame(), hide_index=True)

if comparison.recall is not None and len(comparison.recall):
    st.subheader("Recall of the exact top components against cost")
    st.caption(
        "The AtP* paper's protocol: verify components by exact patching in each method's ranking order; recall "
        "of the exact top-k (by |mean effect|) against cost = method passes (forward 1, backward 2) + verified "
        "components. Solid: signed ranking (|mean estimate|), dashed: unsigned (mean |estimate| per pair); "
        "dotted: the false-negative bound certified by sampling the unverified components."
    )
    recall_components = list(dict.fromkeys(comparison.recall["component"]))
    chosen = st.selectbox("Component type", recall_components, key=f"recall-{run.id}")
    st.plotly_chart(recall_cost(comparison.recall, chosen), key=f"recall-fig-{run.id}-{chosen}")
    summary = recall_summary(comparison.recall, int(meta.get("top_k", 10)))
    st.dataframe(summary[summary["component"] == chosen], hide_index=True)

st.subheader("Estimate vs exact, per cell")
components = list(comparison.exact)
component = st.selectbox("Component type", components, key=f"component-{run.id}")
ordered = sorted(comparison.estimates, key=method_sort_key)
methods = st.multiselect("Methods", ordered, default=ordered,
                         key=f"methods-{run.id}")
available = [m for m in methods if component in comparison.estimates[m]]
if not available:
    st.info("Choose at least one method that estimated this component type.")
    st.stop()
exact = comparison.exact[component]
figure = scatter(exact, [comparison.estimates[m][component] for m in available])
figure.update_layout(height=520)
st.plotly_chart(figure, key=f"scatter-{run.id}-{component}")

if len(exact.axes) == 2:
    method = st.selectbox("Heatmap of one method next to exact patching", available, key=f"heat-{run.id}-{component}")
    side_by_side = compare(exact, comparison.estimates[method][component], normalized=False,
                           titles=(f"exact {component}", f"{method} estimate"))
    side_by_side.update_layout(height=max(420, 20 * len(exact.coords[exact.axes[0]]) + 180))
    st.plotly_chart(side_by_side, key=f"compare-{run.id}-{component}-{method}")
else:
    st.caption(f"{component} has axes {list(exact.axes)}: no single heatmap; the scatter shows every cell.")
