"""Benchmarks, run by hand (`make bench`); each prints figures and the ratio to its reference."""
