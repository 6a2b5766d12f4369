"""Activation patching: the layer x position / layer x head heatmaps of a run, with a drill-down.

Click a cell of the heatmap (or pick it below it) to see every example's value there next to its
clean and corrupt prompts. The heatmap is :func:`interp.viz.patching.heatmap` with its clickable
overlay (plotly heatmaps report no selection to Streamlit, streamlit#8760). "Compare runs" puts two
results on the same grid side by side, e.g. denoising against noising, with their difference.
Everything shown was computed and stored by the patching runner; the page only reads it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from browse import choose_run, keep_in_url, page_help, reading, show_config, stamp, store, url_value
from browse import run_label as describe_run

from interp.errors import InterpError
from interp.patching.persist import load_result, result_names
from interp.patching.result import PatchingResult
from interp.runs import CORRUPT, RUNNING, Run
from interp.viz.comparison import difference, same_grid
from interp.viz.patching import compare, example_drilldown, heatmap

TASK_COLUMNS = ["example", "clean", "corrupt", "answer", "wrong"]


@st.cache_resource(max_entries=24, show_spinner=False)
def _load(path: str, name: str, version: tuple[int, ...]) -> PatchingResult:
    return load_result(Run(path), name)


@st.cache_resource(max_entries=24, show_spinner=False)
def _table(path: str, name: str, version: tuple[int, ...]) -> pd.DataFrame:
    return Run(path).read_table(name)


@st.cache_resource(max_entries=256, show_spinner=False)
def _description(path: str, name: str, version: tuple[int, ...]) -> dict[str, Any]:
    return Run(path).read_json(name)


def result_of(run: Run, name: str) -> PatchingResult:
    with reading(f"result {name!r}", run):
        return _load(str(run.path), name, stamp(run, f"{name}.safetensors", f"{name}.json"))


def table_of(run: Run, name: str) -> pd.DataFrame:
    with reading(f"table {name!r}", run):
        return _table(str(run.path), name, stamp(run, f"{name}.parquet"))


def coord_label(result: PatchingResult, axis: str, value: int) -> str:
    """How a coordinate reads on an axis: the token for a position, ``L3``/``H5`` for layers/heads."""
    if axis == "pos" and result.position_labels is not None and 0 <= value < len(result.position_labels):
        return result.position_labels[value]
    return f"{axis[0].upper()}{value}" if axis in ("layer", "head") else str(value)


def result_title(run: Run, name: str) -> str:
    """``name (sweep: layer x pos, denoising)`` from the result's stored description."""
    try:
        description = _description(str(run.path), name, stamp(run, f"{name}.json"))
        return f"{name}  ({description['sweep']}: {' x '.join(description['axes'])}, {description['direction']})"
    except (InterpError, OSError, ValueError, KeyError):  # unreadable: said when the result itself is opened
        return name


def use_normalized(results: list[PatchingResult], key: str, label: str = "Normalised (clean = 1, corrupt = 0)") -> bool:
    """The normalised / raw toggle; falls back to raw values (with the reason) where undefined."""
    wanted = st.toggle(label, value=True, key=key,
                       help="Normalised: (m - m_corrupt) / (m_clean - m_corrupt) with batch-mean baselines. "
                            "Off: the metric itself.")
    if not wanted:
        return False
    for result in results:
        try:
            result.normalized()
        except InterpError as error:
            st.warning(f"Showing raw values: {error}")
            return False
    return True


def free_and_fixed(result: PatchingResult, key: str) -> tuple[str, str, dict[str, int]]:
    """The two axes to draw (the first axis down, a chosen one across) and values for the others."""
    y_axis = result.axes[0]
    if len(result.axes) == 2:
        return y_axis, result.axes[1], {}
    columns = st.columns(len(result.axes) - 1)
    x_axis = columns[0].selectbox("Across", result.axes[1:], key=f"{key}-across")
    fixed = {}
    others = [axis for axis in result.axes[1:] if axis != x_axis]
    for column, axis in zip(columns[1:], others, strict=True):
        values = result.coords[axis]
        fixed[axis] = column.selectbox(
            f"At {axis}", values, index=len(values) - 1, key=f"{key}-at-{axis}",
            format_func=lambda v, a=axis: coord_label(result, a, v),
        )
    return y_axis, x_axis, fixed


def strongest_cell(
    summary: pd.DataFrame, axes: tuple[str, ...], fixed: dict[str, int], normalized: bool, centre: float = 0.0
) -> dict[str, int] | None:
    """The cell farthest from no effect (``centre``) in the stored per-cell summary (within the fixed values)."""
    rows = summary
    for axis, value in fixed.items():
        rows = rows[rows[axis] == value]
    column = "normalized_mean" if normalized else "mean"
    if rows.empty or column not in rows:
        return None
    best = rows.loc[(rows[column] - centre).abs().idxmax()]
    return {axis: int(best[axis]) for axis in axes}


def show_heatmap(run: Run, names: list[str]) -> None:
    wanted = url_value("patching", "result")
    if f"result-{run.id}" not in st.session_state and wanted in names:
        st.session_state[f"result-{run.id}"] = wanted
    name = st.selectbox("Result", names, key=f"result-{run.id}",
                        format_func=lambda n: result_title(run, n))
    keep_in_url("patching", result=name)
    result = result_of(run, name)
    key = f"{run.id}-{name}"
    normalized = use_normalized([result], key=f"norm-{key}")
    y_axis, x_axis, fixed = free_and_fixed(result, key)
    if result.positions == "raw" and "pos" in result.axes and not result.meta.get("aligned", True):
        st.warning(
            "Raw positions on prompts of different layouts: a column holds a different token in different "
            "examples, so its mean mixes unrelated tokens. Sweep by named position (`positions: named`) to "
            "patch each example at its own S1, IO, S2, END, ...", icon=":material/warning:",
        )
    figure = heatmap(result, normalized, fixed, selectable=True)
    figure.update_layout(height=max(420, 20 * len(result.coords[y_axis]) + 180))
    event = st.plotly_chart(figure, key=f"heatmap-{key}-{sorted(fixed.items())}", on_select="rerun",
                            selection_mode="points")
    st.caption(
        "Hover a cell for its mean, standard error and number of examples; click it for the examples. "
        + ("Each example was patched at its own token for the position's name. " if result.positions == "named" else "")
        + f"White is no effect ({result.no_effect('normalized' if normalized else 'raw'):.3g})."
    )

    picked = [p["customdata"] for p in (event.selection.points if event else []) if p.get("customdata")]
    cell_key = f"cell-{key}"
    if picked and st.session_state.get(f"{cell_key}-clicked") != picked[0]:
        st.session_state[f"{cell_key}-clicked"] = picked[0]
        st.session_state[f"{cell_key}-{y_axis}"], st.session_state[f"{cell_key}-{x_axis}"] = (int(v) for v in picked[0])
    summary = table_of(run, f"{name}_summary")
    with st.expander("Strongest cells (stored summary): click a row to open the cell"):
        column = "normalized_mean" if normalized else "mean"
        centre = result.no_effect("normalized" if normalized else "raw")
        rows = summary
        for axis, value in fixed.items():
            rows = rows[rows[axis] == value]
        top = rows.reindex((rows[column] - centre).abs().sort_values(ascending=False).index).head(15)
        if "pos" in top and "position" not in top:
            top = top.assign(position=[coord_label(result, "pos", int(p)) for p in top["pos"]])
        st.caption(f"Ranked by distance from no effect ({centre:g}).")
        chosen = st.dataframe(readable(top), hide_index=True, on_select="rerun", selection_mode=["single-row", "single-cell"],
                              key=f"strongest-{key}-{sorted(fixed.items())}")
    selection = getattr(chosen, "selection", None)
    rows_picked = list(getattr(selection, "rows", []) or []) or [c[0] for c in getattr(selection, "cells", []) or []]
    if rows_picked and st.session_state.get(f"{cell_key}-row") != rows_picked[0]:
        st.session_state[f"{cell_key}-row"] = rows_picked[0]
        for axis in (y_axis, x_axis):
            st.session_state[f"{cell_key}-{axis}"] = int(top.iloc[rows_picked[0]][axis])
    default = strongest_cell(summary, result.axes, fixed, normalized, centre) or {}
    for axis in (y_axis, x_axis):
        if st.session_state.get(f"{cell_key}-{axis}") not in result.coords[axis]:
            from_url = url_value("patching", axis)
            chosen = int(from_url) if from_url is not None and from_url.lstrip("-").isdigit() else None
            st.session_state[f"{cell_key}-{axis}"] = (
                chosen if chosen in result.coords[axis] else default.get(axis, result.coords[axis][0])
            )

    st.subheader("Examples at a cell")
    pick_y, pick_x = st.columns(2)
    cell = dict(fixed)
    for column, axis in ((pick_y, y_axis), (pick_x, x_axis)):
        cell[axis] = column.selectbox(axis, result.coords[axis], key=f"{cell_key}-{axis}",
                                      format_func=lambda v, a=axis: coord_label(result, a, v))
    keep_in_url("patching", **{axis: cell.get(axis) for axis in ("layer", "pos", "head", "neuron")})
    show_cell(run, result, summary, cell, normalized)

    with st.expander("Cost"):
        st.json({k: round(v, 4) for k, v in result.cost.as_dict().items()}, expanded=True)


def show_cell(run: Run, result: PatchingResult, summary: pd.DataFrame, cell: dict[str, int], normalized: bool) -> None:
    where = ", ".join(f"{axis} {coord_label(result, axis, cell[axis])}" for axis in result.axes)
    row = summary
    for axis in result.axes:
        row = row[row[axis] == cell[axis]]
    if not row.empty:
        stats = row.iloc[0]
        tiles = st.columns(3)
        if normalized:
            tiles[0].metric("normalised mean", f"{stats['normalized_mean']:.3f}", help=where)
            tiles[1].metric("standard error", f"{stats['normalized_sem']:.3f}")
        else:
            tiles[0].metric(f"mean {result.metric}", f"{stats['mean']:.3f}", help=where)
            tiles[1].metric("standard error", f"{stats['sem']:.3f}")
        tiles[2].metric("examples", result.values.shape[0])
    task = table_of(run, "task") if "task" in run.tables() else None
    tokens = patched_tokens(result, task, cell)
    st.plotly_chart(example_drilldown(result, cell, normalized, tokens=tokens), key=f"drilldown-{run.id}-{result.sweep}")

    index = (slice(None), *(result.coords[axis].index(cell[axis]) for axis in result.axes))
    examples = pd.DataFrame({
        "example": range(result.values.shape[0]),
        "patched": result.values[index].tolist(),
        "clean metric": result.clean.tolist(),
        "corrupt metric": result.corrupt.tolist(),
    })
    if normalized:
        examples.insert(1, "normalised", result.normalized()[index].tolist())
    if tokens is not None:
        examples.insert(1, "patched token", tokens)
    if task is not None:
        examples = examples.merge(task[[c for c in TASK_COLUMNS if c in task.columns]], on="example", how="left")
        examples = examples[[*[c for c in examples.columns if c not in ("clean", "corrupt")], "clean", "corrupt"]]
    # the key numbers first, the long prompts last and wrapped
    config = {c: st.column_config.NumberColumn(c, format="%.3f") for c in ("patched", "normalised", "clean metric", "corrupt metric")}
    config.update({c: st.column_config.TextColumn(c, width="large") for c in ("clean", "corrupt")})
    st.dataframe(examples, hide_index=True, width="stretch", column_config=config, row_height=60 if task is not None else None)
    if task is not None and "layer" in cell:
        link_to_model(run, result, task, cell, examples)


def link_to_model(run: Run, result: PatchingResult, task: pd.DataFrame, cell: dict[str, int], examples: pd.DataFrame) -> None:
    """A link to the model page with this cell's layer (and head) on one example's clean prompt."""
    effect = result.quantity("effect")[(slice(None), *(result.coords[a].index(cell[a]) for a in result.axes))]
    strongest = int(effect.abs().argmax())
    pick, link = st.columns([1, 2])
    example = pick.selectbox("Example to open on the model page", list(task["example"]), index=strongest,
                             key=f"open-example-{run.id}-{result.sweep}-{sorted(cell.items())}",
                             help="The example with the largest effect at this cell is chosen first.")
    prompt = str(task.loc[task["example"] == example, "clean"].iloc[0])
    params = {"model": result.meta.get("model", ""), "layer": cell["layer"], "prompt": prompt}
    if "head" in cell:
        params["head"] = cell["head"]
    what = f"layer {cell['layer']}" + (f" head {cell['head']}" if "head" in cell else "")
    with link:
        st.page_link("views/model.py", label=f"Open {what} on example {example}'s prompt in the model page",
                     icon=":material/open_in_new:", query_params=params)


def patched_tokens(result: PatchingResult, task: pd.DataFrame | None, cell: dict[str, int]) -> list[str] | None:
    """The token patched in each example at a named position (``"11: John"``), from the run's task table."""
    if result.positions != "named" or "pos" not in cell or task is None or result.position_labels is None:
        return None
    column = f"token {result.position_labels[cell['pos']]}"
    return [str(t) for t in task[column]] if column in task else None


READABLE = {"normalized_mean": "normalised mean", "normalized_sem": "normalised s.e.m.", "sem": "s.e.m.", "mean": "mean"}


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """A stored summary with readable column names and rounded numbers."""
    return frame.rename(columns=READABLE).round(4)


def comparable(result: PatchingResult, exclude: tuple[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(run id, result name, description) of every stored result with the same axes as ``result``."""
    found = []
    for info in store().list("patching"):
        if info.status == CORRUPT:
            continue
        run = Run(info.path)
        try:
            names = result_names(run)
            descriptions = [(n, _description(str(run.path), n, stamp(run, f"{n}.json"))) for n in names]
        except (InterpError, OSError, ValueError, KeyError):  # an unreadable run just cannot be compared
            continue
        for name, description in descriptions:
            if (info.id, name) != exclude and tuple(description.get("axes", ())) == result.axes:
                found.append((info.id, name, description))
    return found


def show_compare(run: Run, names: list[str]) -> None:
    name = st.selectbox("Result A (this run)", names, key=f"compare-a-{run.id}",
                        format_func=lambda n: result_title(run, n))
    first = result_of(run, name)
    others = comparable(first, (run.id, name))
    if not others:
        st.info(
            f"No other stored result has the axes {list(first.axes)}. To compare denoising with noising, run "
            f"the same config again with `direction: {'noising' if first.direction == 'denoising' else 'denoising'}`."
        )
        return
    preferred = sorted(range(len(others)), key=lambda i: (
        others[i][2].get("sweep") != first.sweep, others[i][2].get("direction") == first.direction))
    runs = {info.id: info for info in store().list("patching")}
    choice = st.selectbox(
        "Result B", preferred, key=f"compare-b-{run.id}-{name}",
        format_func=lambda i: f"{others[i][1]} ({others[i][2].get('direction')}) in {describe_run(runs[others[i][0]])}",
    )
    other_id, other_name, _ = others[choice]
    second = result_of(Run(runs[other_id].path), other_name)
    normalized = use_normalized([first, second], key=f"compare-norm-{run.id}-{name}",
                                label="Normalised effects ((patched - base) / (clean - corrupt))")
    st.caption(
        "Both panels show effects, patched minus the unpatched base run (0 = no effect in either direction): "
        "in denoising a sufficient cell is positive (+1 restores the clean behaviour), in noising a necessary "
        "cell is negative (-1 destroys it)."
    )
    _, _, fixed = free_and_fixed(first, f"compare-{run.id}-{name}")
    titles = (f"A: {first.direction} {first.sweep} ({run.id})", f"B: {second.direction} {second.sweep} ({other_id})")
    try:
        side_by_side = compare(first, second, normalized, fixed, titles)
    except ValueError as error:
        st.info(f"These two results cannot be drawn together: {error}")
        return
    side_by_side.update_layout(height=max(420, 20 * len(first.coords[first.axes[0]]) + 180))
    st.plotly_chart(side_by_side, key=f"compare-{run.id}-{name}-{other_id}-{other_name}")
    problem = same_grid(first, second)
    if problem is not None:
        st.info(f"No cell-by-cell difference: {problem}.")
        return
    delta = difference(first, second, normalized, fixed, names=("A", "B"))
    delta.update_layout(height=max(420, 20 * len(first.coords[first.axes[0]]) + 180))
    st.plotly_chart(delta, key=f"difference-{run.id}-{name}-{other_id}-{other_name}")


st.title("Activation patching")
run, info = choose_run("patching")
page_help("patching")
show_config(run)
with reading("results index", run):
    names = result_names(run)
    planned = len(run.config.get("sweeps", []))
if not names:
    if info.status == RUNNING:
        groups = {group: len(run.finished_shards(group)) for group in run.shard_groups()}
        done = ", ".join(f"{group}: {count} shard(s)" for group, count in groups.items()) or "no shard yet"
        st.info(f"No sweep of this run has finished yet ({done} written). Reload the page later.")
        st.stop()
    st.error("This run has no patching results: its results index (`results.json`) is missing or empty.")
    st.stop()

first = result_of(run, names[0])
dataset = info.dataset if isinstance(info.dataset, dict) else {"name": info.dataset}
sweeps = f"{len(names)} of {planned}" if planned else str(len(names))
st.markdown(
    f"**model** `{first.meta.get('model', '?')}` · **task** `{dataset.get('name', '?')}` "
    f"({first.values.shape[0]} examples) · **metric** `{first.metric}` · **direction** `{first.direction}` · "
    f"**sweeps finished** {sweeps}"
)

view = st.radio("View", ["Heatmap", "Compare runs"], horizontal=True, key="patching-view", label_visibility="collapsed")
if view == "Heatmap":
    show_heatmap(run, names)
else:
    show_compare(run, names)
