"""Observability: structured logs (and, later, metrics)."""
