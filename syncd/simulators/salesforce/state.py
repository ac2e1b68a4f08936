"""What every layer of the Salesforce simulator shares: the org's state."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from syncd.simulators import soql, written
from syncd.simulators._base import (
    ASGIApp,
    Clock,
    Counters,
    Faults,
    TokenRegistry,
)
from syncd.simulators.salesforce.schema import FieldSpec
from syncd.simulators.salesforce.storage import (
    _Cursor,
    _Table,
)


class OrgState:
    """The simulated org's state, shared by every layer of `SalesforceSimulator`.

    The layers (rules -> records -> seed -> query -> replication -> composite -> oauth -> rest ->
    faults -> simulator) each add one concern; this class only declares what they share, so each
    layer type-checks on its own. `SalesforceSimulator.__init__` sets every attribute.
    """

    clock: Clock
    base_url: str
    tokens: TokenRegistry
    counters: Counters
    faults: Faults
    app: ASGIApp
    daily_api_limit: int
    api_usage: int
    assignment_owner_id: str | None
    duplicate_rule: bool
    updated_id_limit: int
    tables: dict[str, _Table]
    fields: dict[str, dict[str, FieldSpec]]
    soql_objects: dict[str, soql.ObjectInfo]
    org_id: str
    connector_user_id: str
    client_id: str
    client_secret: str
    oauth_password: str | None
    rotate_refresh_tokens: bool
    jwt_public_key: str | None
    _refresh_tokens: set[str]
    _written: written.WrittenCounter
    _id_counter: int
    _last_stamp: datetime
    _undo: list[Callable[[], None]] | None
    _cursors: OrderedDict[str, _Cursor]
    _dropped: dict[str, set[str]]
    _custom: dict[str, tuple[FieldSpec, ...]]
