"""Benchmark suite (pytest-benchmark) and the peer comparison; see README, Speed."""
