"""Benchmarks and the chaos campaign (`make chaos`)."""
