"""Benchmarks: `just bench` runs them and prints results for docs/BENCHMARKS.md."""
