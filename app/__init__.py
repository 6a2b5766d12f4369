"""The Streamlit results browser's files. Installed as the package ``interp._app`` (see setup.py) so
that ``interp app`` finds them without a checkout; the pages are scripts run by ``streamlit run
Home.py``, which import each other by plain module name (``from browse import ...``), never
through this package.
"""
