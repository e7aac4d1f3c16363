"""Accuracy and speed benchmarks (not tests). Each is `python -m benchmarks.NAME`."""
