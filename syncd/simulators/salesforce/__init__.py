"""A faithful local Salesforce: OAuth token endpoint, REST API (SOQL, sObjects, collections,
composite, replication, limits) over Lead / Contact / Task / User / Group, as an ASGI app.

Shapes follow `/work/shared/reference/wire-formats.md` sections A and B. Choices the docs leave
open are marked "UNCONFIRMED" in comments. Notable behaviour a client must cope with, as on the
real server:

* ``Sforce-Auto-Assign`` defaults to TRUE on REST (Salesforce docs, "Assignment Rule Header"):
  with a seeded ``assignment_rule``, every Lead create *and update* without
  ``Sforce-Auto-Assign: FALSE`` gets the rule's owner, overriding any OwnerId sent.
* Timestamps are whole seconds, so several records share one SystemModstamp; poll with ``>=``.
* A query cursor holds a snapshot; at most 10 are open per user (the oldest is released) and
  each expires after 15 minutes unused (``INVALID_QUERY_LOCATOR``).
* ``POST /composite`` takes at most 25 subrequests, of which at most 5 may be queries
  (``query``/``queryAll``) or sObject Collections (``composite/sobjects``) (wire-formats C.3a,
  from the ``resources_composite_composite_post`` reference). More is refused whole, before any
  subrequest runs: 400 ``[{"errorCode": "INVALID_BATCH_REQUEST", "message": ...}]``.
  UNCONFIRMED: the status and errorCode of both refusals; CHOICE: a strict 400 with that code.
* ``sobjects/X/updated`` refuses a range holding more than 600,000 ids (wire-formats B.7):
  400 ``EXCEEDED_ID_LIMIT`` (UNCONFIRMED: the status and message; CHOICE: 400). The cap is the
  seed key ``updated_id_limit`` (and the constructor argument of the same name), so a test can
  show it with a small number.
* Every write attempt is counted per sObject and field name (``written()``, ``GET
  /__sim__/written``): single-record creates and updates, each collection item, and composite
  subrequests (which run the same handlers), refused ones included.
"""

from syncd.simulators.salesforce.schema import (
    BATCH_SIZE,
    CURSORS_PER_USER,
    LEAD_STATUSES,
    MAX_COLLECTION,
    MAX_COMPOSITE,
    MAX_COMPOSITE_QUERIES_AND_COLLECTIONS,
    SCHEMA,
    UPDATED_ID_LIMIT,
    WRITABLE,
    FieldSpec,
    parse_datetime,
    sf_datetime,
)
from syncd.simulators.salesforce.simulator import SalesforceSimulator
from syncd.simulators.salesforce.wire import SalesforceError

__all__ = [
    "BATCH_SIZE",
    "CURSORS_PER_USER",
    "LEAD_STATUSES",
    "MAX_COLLECTION",
    "MAX_COMPOSITE",
    "MAX_COMPOSITE_QUERIES_AND_COLLECTIONS",
    "SCHEMA",
    "UPDATED_ID_LIMIT",
    "WRITABLE",
    "FieldSpec",
    "SalesforceError",
    "SalesforceSimulator",
    "parse_datetime",
    "sf_datetime",
]
