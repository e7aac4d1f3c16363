"""Orchestration: one case end to end, batches, outputs and reports."""
