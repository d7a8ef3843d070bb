"""Benchmark clients, one module per tool; run as ``python -m clients.<tool>`` from benchmarks/."""
