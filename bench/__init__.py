"""Benchmarks of the sync against the sandbox: ``python -m bench`` (see docs/PERFORMANCE.md)."""
