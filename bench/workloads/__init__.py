"""Benchmark workloads for fntrace (see bench/README.md)."""
