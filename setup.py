"""The package list, which ``pyproject.toml`` cannot express (everything else is there).

Every package under ``interp/``, plus the Streamlit app: it stays in the repository's top-level
``app/`` folder and is installed as the package ``interp._app`` (its ``views/`` pages are package
data, listed in pyproject.toml), so that ``interp app`` finds it in a wheel install as well as in a
checkout or an editable install (see ``interp/app_cli.py``).
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["interp", "interp.*"]), "interp._app"],
    package_dir={"interp._app": "app"},
)
