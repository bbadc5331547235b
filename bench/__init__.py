"""Benchmarks (not tests): ingest, stats and fan-out; results go to docs/performance.md."""
