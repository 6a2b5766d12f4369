"""Runs overview: every run in the store, filtered by kind, status, model, task and date; open a run
on its page, see how far a running run has got and why a run failed or is unreadable, and delete a
run after confirming its id. The app serves this page at ``/runs`` (and ``/`` leads here)."""

from __future__ import annotations

import datetime as dt
from pathlib import PurePath

import pandas as pd
import streamlit as st
from browse import MAKE_RUNS, PAGES, RUN_PARAM, store

from interp.runs import CORRUPT, FAILED, RUNNING, RunNotFoundError

COLUMNS = ["id", "kind", "status", "progress", "model", "dataset", "created", "finished"]

runs = store()
st.title("Runs")
st.caption(f"Store: `{runs.root}`")
frame = runs.to_frame()
infos = {info.id: info for info in runs.list()}


def dataset_text(value: object) -> object:
    """A run's dataset as a short name: ``ioi-abc (16)``, ``demo corpus``, ``text: a.txt (+2 more)``,
    not the raw mapping."""
    if not isinstance(value, dict):
        return value
    name = value.get("name") or value.get("kind") or "?"
    name = f"{name} corpus" if value.get("kind") == "demo" and "name" not in value else name
    files = value.get("paths") or ([value["path"]] if isinstance(value.get("path"), str) else [])
    if files and "name" not in value:
        more = f" (+{len(files) - 1} more)" if len(files) > 1 else ""
        name = f"{name}: {PurePath(str(files[0])).name or files[0]}{more}"
    return f"{name} ({value['examples']})" if "examples" in value else str(name)


if not frame.empty and "dataset" in frame:
    frame = frame.assign(dataset=[dataset_text(infos[i].dataset) if i in infos else v
                                  for i, v in zip(frame["id"], frame["dataset"], strict=True)])


def progress_text(run_id: str) -> str | None:
    """How far an unfinished run had got (``"2/6 stages"``), as its writer recorded it; None once finished."""
    info = infos.get(run_id)
    if info is None or info.progress is None or info.status not in (RUNNING, FAILED):
        return None
    return info.progress.short()


if not frame.empty:
    frame = frame.assign(progress=[progress_text(i) for i in frame["id"]])
if frame.empty:
    commands = "\n".join(f"{command} --runs {runs.root}" for command in MAKE_RUNS.values())
    st.info(f"No runs in `{runs.root}` yet. Make some with the command line, then reload this page:")
    st.code(commands, language="bash")
    st.stop()


def rounded(value: object, digits: int = 4) -> object:
    """Floats rounded to ``digits`` significant digits, through nested dicts and lists."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}")
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v, digits) for v in value]
    return value


def choices(column: str) -> list[str]:
    return sorted(frame[column].dropna().astype(str).unique())


filters = st.columns([1, 1, 1, 1, 1.4])
kinds = filters[0].multiselect("Kind", choices("kind"), key="filter-kind")
statuses = filters[1].multiselect("Status", choices("status"), key="filter-status")
models = filters[2].multiselect("Model", choices("model"), key="filter-model")
tasks = filters[3].multiselect("Task", choices("dataset"), key="filter-task")
created = frame["created"].dropna()
dates = filters[4].date_input(
    "Created between",
    value=(created.min().date(), created.max().date()) if len(created) else (),
    key="filter-dates",
)

shown = frame
for column, wanted in (("kind", kinds), ("status", statuses), ("model", models), ("dataset", tasks)):
    if wanted:
        shown = shown[shown[column].astype(str).isin(wanted)]
if isinstance(dates, tuple) and len(dates) == 2:
    start = pd.Timestamp(dates[0], tz="UTC")
    end = pd.Timestamp(dates[1] + dt.timedelta(days=1), tz="UTC")
    undated = shown["created"].isna()  # corrupt runs have no readable date: always listed
    shown = shown[undated | ((shown["created"] >= start) & (shown["created"] < end))]

counts = frame["status"].value_counts()
tiles = st.columns(5)
tiles[0].metric("Runs", len(frame))
for tile, status in zip(tiles[1:], ("finished", RUNNING, FAILED, CORRUPT), strict=True):
    tile.metric(status.capitalize(), int(counts.get(status, 0)))

st.dataframe(
    shown[COLUMNS],
    hide_index=True,
    width="stretch",
    column_config={
        "created": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "finished": st.column_config.DatetimeColumn("finished (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    },
)
st.caption(f"{len(shown)} of {len(frame)} runs shown.")
if shown.empty:
    st.stop()

left, right = st.columns(2)
with left:
    st.subheader("Open a run")
    chosen = st.selectbox("Run", shown["id"].tolist(), key="open-run")
    row = shown[shown["id"] == chosen].iloc[0]
    if row["status"] == CORRUPT:
        st.error(f"This run cannot be read: {row['error']}")
    elif row["kind"] in PAGES:
        if row["status"] == FAILED:
            st.warning(f"This run failed: {str(row['error']).strip().splitlines()[-1]}")
        st.page_link(PAGES[row["kind"]], label=f"Open on the {row['kind']} page", icon=":material/open_in_new:",
                     query_params={RUN_PARAM: chosen})
    else:
        st.info(f"The app has no page for runs of kind {row['kind']!r} yet.")
    summary = infos[chosen].summary if chosen in infos else {}
    if summary:
        with st.expander("Summary numbers"):
            st.json(rounded(summary), expanded=1)

with right:
    st.subheader("Delete a run")
    doomed = st.selectbox("Run to delete", shown["id"].tolist(), index=None, key="delete-run",
                          placeholder="choose a run")
    if doomed is not None:
        status = shown.loc[shown["id"] == doomed, "status"].iloc[0]
        if status == RUNNING:
            st.warning("This run is still being written: deleting it makes the process writing it fail.")
        typed = st.text_input(f"Type the run id `{doomed}` to confirm", key="delete-confirm")
        if st.button("Delete permanently", type="primary", disabled=typed.strip() != doomed, key="delete-button"):
            try:
                runs.delete(doomed)
            except (RunNotFoundError, OSError) as error:
                st.error(f"Could not delete `{doomed}`: {error}")
            else:
                st.session_state.pop("delete-confirm", None)
                st.session_state.pop("delete-run", None)
                st.toast(f"Deleted run {doomed}")
                st.rerun()

problems = frame[frame["status"].isin([FAILED, CORRUPT])]
if not problems.empty:
    st.subheader("Runs with problems")
    for _, bad in problems.iterrows():
        with st.expander(f"{bad['id']} ({bad['status']})"):
            st.code(str(bad["error"] or "no error recorded"), language=None)
