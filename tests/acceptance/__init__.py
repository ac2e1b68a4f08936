"""Acceptance tests: the real `syncd` CLI in subprocesses."""
