"""Which remembered Pardot imports a settled batch lets go of (`settle.imports_done`).

A prospect whose work goes back to the queue (a spent budget, a refused login) keeps its place
in its import's record: its retry must still ask what became of the import, or it would be
written a second time. An import that applied nothing is forgotten whole.
"""

from __future__ import annotations

from syncd import errors
from syncd.runtime.pipeline.settle import imports_done
from syncd.runtime.pipeline.stages import Work

SPENT = errors.BudgetExhaustedError(system="pardot", status=None, code="BUDGET_PAUSED", message="")
REFUSED = errors.AuthError(system="salesforce", status=400, code="invalid_grant", message="")
TIMEOUT = errors.RetriableAPIError(system="pardot", status=None, code="TIMEOUT", message="")


def test_works_given_back_keep_their_import_remembered() -> None:
    works = [
        Work(items=(), prospect_id=1),
        Work(items=(), prospect_id=2).paused_by(SPENT),
        Work(items=(), prospect_id=3).failed(REFUSED),
        Work(items=(), prospect_id=4).failed(TIMEOUT),
    ]
    done = imports_done({7: {1, 2, 3, 4}, 8: {2}, 9: None}, works)
    assert done == {7: frozenset({1, 4}), 8: frozenset(), 9: None}
