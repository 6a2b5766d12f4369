"""Plotly figure builders shared by notebooks, the CLI and the app."""

from interp.viz.patching import compare, example_drilldown, heatmap

__all__ = ["compare", "example_drilldown", "heatmap"]
