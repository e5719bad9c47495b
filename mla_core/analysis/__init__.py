"""Measuring models: cache sizes, head scores, attention capture, the rank sweep, paper figures."""
