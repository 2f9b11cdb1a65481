"""Benchmark harness: trio-asgi against its peers on one machine (`python -m benchmarks`)."""
