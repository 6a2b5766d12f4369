"""The interp results browser: ``interp app [--runs DIR]``, or ``streamlit run app/Home.py -- --runs DIR``.

One page per result kind (activation patching, attribution vs exact patching, sparse autoencoders,
sparse feature circuits, steering, concepts (TCAV), function vectors), a runs overview, and a live
model page. The pages read runs only through :mod:`interp.runs` and
draw them with :mod:`interp.viz`; they never compute what the library stored, and never write into
a run (the overview's delete, after confirmation, is the one write). This file is the frame around
every page: navigation and the store's location.

Every page has its own address (``/runs``, ``/patching?run=ID``, ...). The root ``/`` is a hidden
page that moves on to ``/runs``: a page that is Streamlit's default is served only at ``/``, so the
overview itself must not be the default, or ``/runs`` would not be found.
"""

from __future__ import annotations

import streamlit as st
from browse import runs_root

st.set_page_config(page_title="interp", page_icon=":material/biotech:", layout="wide")

overview = st.Page("views/overview.py", title="Runs overview", icon=":material/list:", url_path="runs")


def landing() -> None:
    """The app's root address: the runs overview, at its own address ``/runs`` (query kept)."""
    st.switch_page(overview, query_params=st.query_params.to_dict())


pages = {
    "Runs": [overview, st.Page(landing, title="interp", url_path="home", default=True, visibility="hidden")],
    "Results": [
        st.Page("views/patching.py", title="Activation patching", icon=":material/grid_on:", url_path="patching"),
        st.Page("views/attribution.py", title="Attribution vs exact", icon=":material/scatter_plot:", url_path="attribution"),
        st.Page("views/sae.py", title="Sparse autoencoders", icon=":material/hub:", url_path="sae"),
        st.Page("views/features.py", title="Feature circuits", icon=":material/account_tree:", url_path="features"),
        st.Page("views/steering.py", title="Steering", icon=":material/tune:", url_path="steering"),
        st.Page("views/concepts.py", title="Concepts (TCAV)", icon=":material/lightbulb:", url_path="concepts"),
        st.Page("views/function_vectors.py", title="Function vectors", icon=":material/functions:",
                url_path="function_vectors"),
    ],
    "Live": [st.Page("views/model.py", title="Model", icon=":material/psychology:", url_path="model")],
}
page = st.navigation(pages)
st.sidebar.caption(f"Runs store: `{runs_root()}`")
page.run()
