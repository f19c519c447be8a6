"""Evaluations behind ``gvf eval ...`` (each returns a flat dict of figures)."""
