"""Benchmarks behind ``gvf bench ...``; each returns a flat dict of figures."""
