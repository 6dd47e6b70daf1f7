"""Benchmarks that print a results table; run with `make bench` (not part of the tests)."""
