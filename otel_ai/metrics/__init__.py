"""Metrics: search progress, system, process tree and GPU."""
