"""Reproducible benchmarks for xacct-map (not tests): run ``python -m benchmarks.listing --help``."""
