"""Benchmarks: measured figures, not tests (run each with `.venv/bin/python -m bench.<name>`)."""
