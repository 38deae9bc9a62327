"""Benchmarks: each prints figures beside a baseline from the same run; never tests."""
