"""Steering: directions that change what a model does, and the function vectors of in-context tasks."""
