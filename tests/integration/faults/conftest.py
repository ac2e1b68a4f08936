"""The pipeline harness (`make_sync`: simulators in-process, the real runtime) for fault tests."""

from __future__ import annotations

from integration.pipeline.conftest import make_sync

__all__ = ["make_sync"]
