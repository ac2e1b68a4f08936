"""The pure rules of the sync: given what both systems hold now, decide what to write and why.

Nothing here does I/O, reads the clock or logs: time comes in as an argument, results are
values. `plan.reconcile` is the entry point; it uses `match` (which record a prospect syncs
with), `merge` (three-way field merge per policy, over `fieldmap` and `values`), and `owners`
(assignment). `retry` decides backoff. `tests/unit/domain/test_purity.py` enforces the purity.
"""
