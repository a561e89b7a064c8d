"""Distributed search: YAML spaces -> Ray Tune trials -> MLflow runs (parent per search, child per trial)."""
