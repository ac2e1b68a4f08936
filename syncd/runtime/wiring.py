"""The composition root: settings in, a ready `Runtime` (store, clients, budget, rules) out.

Every command that talks to the APIs or the store builds its pieces here and nowhere else, so a
test (or `syncd demo`) can swap the network for the simulators by passing `transports`, and the
production wiring is the same code path as the tested one.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from syncd import logs
from syncd.clients import http
from syncd.clients.auth import SalesforceAuth
from syncd.clients.pardot import PardotClient
from syncd.clients.prospects import pardot_user_from
from syncd.clients.records import CrmRecords
from syncd.clients.salesforce import SalesforceClient
from syncd.domain.fieldmap import FieldMap
from syncd.domain.models import CrmType, Directory, SyncConfig
from syncd.runtime.budget import ApiBudget
from syncd.settings import Settings
from syncd.store import Store

log = logs.get(__name__)

Clock = Callable[[], datetime]
REFRESH_TOKEN_KEY = "salesforce.refresh_token"
DIRECTORY_MAX_AGE_S = 600.0
PARDOT_USER_FIELDS = ("id", "email", "username", "salesforceId", "isDeleted")


def utc_now() -> datetime:
    """The wall clock in UTC (the runtime's default clock)."""
    return datetime.now(UTC)


@dataclass(eq=False)
class Runtime:
    """Everything a command needs to sync: built by `build_runtime`, closed by `aclose`."""

    settings: Settings
    store: Store
    auth: SalesforceAuth
    salesforce: SalesforceClient
    pardot: PardotClient
    budget: ApiBudget
    field_map: FieldMap
    config: SyncConfig
    clock: Clock
    _directory: Directory | None = field(default=None, repr=False)
    _directory_at: datetime | None = field(default=None, repr=False)
    # Pardot refused an import (its daily import limit): PATCH only until then.
    imports_refused_until: datetime | None = field(default=None, repr=False)

    async def directory(self, *, max_age_s: float = DIRECTORY_MAX_AGE_S) -> Directory:
        """Users and queues of both sides, loaded once and refreshed when older than `max_age_s`."""
        now = self.clock()
        if (
            self._directory is None
            or self._directory_at is None
            or (now - self._directory_at).total_seconds() >= max_age_s
        ):
            self._directory = await load_directory(self)
            self._directory_at = now
        return self._directory

    @functools.cached_property
    def crm(self) -> CrmRecords:
        """The named Salesforce reads (Leads, Contacts, Tasks, Users) as domain values."""
        return CrmRecords(
            self.salesforce, self.crm_select_fields, mirror_field=self.config.crm_link_field
        )

    def crm_select_fields(self, crm_type: CrmType) -> tuple[str, ...]:
        """Everything to SELECT from Lead or Contact: the record fields, the mapped fields and
        the link's mirror field (`sync.crm_link_field`) when one is configured."""
        names = self.field_map.crm_select_fields(crm_type)
        mirror = self.config.crm_link_field
        return names if not mirror or mirror in names else (*names, mirror)

    def forget_directory(self) -> None:
        """Reload the directory on next use (after an owner change names an unknown user)."""
        self._directory = None

    async def aclose(self) -> None:
        """Flush the API usage counts and close the clients and the store."""
        try:
            await self.budget.sync()
        except Exception as exc:  # closing must go on; the counts are advisory
            log.warning("api_usage_flush_failed", error=type(exc).__name__)
        await self.pardot.aclose()
        await self.salesforce.aclose()
        await self.auth.aclose()
        await self.store.aclose()


async def load_directory(rt: Runtime) -> Directory:
    """Read Pardot users and Salesforce users (two calls, once per refresh)."""
    session = await rt.auth.session()
    raw_users = await rt.pardot.list_users(list(PARDOT_USER_FIELDS))
    pardot_users = {u.id: u for u in map(pardot_user_from, raw_users)}
    crm_users = await rt.crm.users()
    # Queues are Groups, whose ids always start with 00G (`Directory.is_queue` checks that), so
    # no call is spent listing them; the configured assignment queue is named explicitly.
    queue_ids = frozenset(q for q in (rt.settings.sync.assignment_queue_id,) if q)
    log.info(
        "directory_loaded",
        pardot_users=len(pardot_users),
        crm_users=len(crm_users),
        queues=len(queue_ids),
    )
    return Directory(
        pardot_users=pardot_users,
        crm_users=crm_users,
        queue_ids=queue_ids,
        connector_user_id=session.user_id,
    )


def warn_if_tls_unverified(settings: Settings) -> None:
    """Say loudly (log event and stderr) when TLS certificate checks are turned off."""
    off = [
        name
        for name, verify in (
            ("salesforce.verify_tls", settings.salesforce.verify_tls),
            ("pardot.verify_tls", settings.pardot.verify_tls),
        )
        if not verify
    ]
    if not off:
        return
    log.warning("tls_verification_disabled", settings=off)
    sys.stderr.write(
        f"syncd: WARNING: TLS certificate verification is OFF ({', '.join(off)}); anyone on "
        "the network path can read and change the data and tokens. Use this only against a "
        "local simulator.\n"
    )


def sync_config(settings: Settings, field_map: FieldMap) -> SyncConfig:
    """The domain's view of the `[sync]` settings."""
    s = settings.sync
    start = _parse_start_at(s.start_at)
    return SyncConfig(
        field_map=field_map,
        assignment=s.assignment,
        assignment_queue_id=s.assignment_queue_id,
        email_activities=s.email_activities,
        auto_create_prospects=s.auto_create_prospects,
        auto_create_since=start,
        crm_link_field=s.crm_link_field,
        crm_delete_action=s.crm_delete_action,
        opt_in_owner=s.opt_in_owner,
    )


def _parse_start_at(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def open_store(settings: Settings, *, migrate: bool | None = None) -> Store:
    """The store, migrated on open unless `database.auto_migrate` is false."""
    db = settings.database
    return await Store.open(
        db.url,
        busy_timeout_ms=db.busy_timeout_ms,
        migrate=db.auto_migrate if migrate is None else migrate,
    )


async def build_runtime(
    settings: Settings,
    *,
    transports: http.Transports | None = None,
    clock: Clock = utc_now,
    store: Store | None = None,
    migrate: bool | None = None,
) -> Runtime:
    """Build the runtime: store, Salesforce auth + client, Pardot client, budget, rules.

    `transports` (an object with `salesforce` / `pardot` httpx transports, such as
    `World.transports()`) replaces the network; `store` reuses an open store.
    """
    settings.require_salesforce()
    settings.require_pardot()
    warn_if_tls_unverified(settings)
    transports = transports or http.Transports()
    sf_transport, pd_transport = transports.salesforce, transports.pardot
    own_store = store is None
    st = store if store is not None else await open_store(settings, migrate=migrate)
    try:
        budget = ApiBudget(
            share=settings.sync.api_budget_share,
            pardot_daily_limit=settings.pardot.daily_api_limit,
            clock=clock,
            store=st,
        )
        stored_refresh = None
        if settings.salesforce.auth_flow == "refresh_token":
            async with st.read() as tx:
                value = await st.kv.get(tx, REFRESH_TOKEN_KEY)
            stored_refresh = value if isinstance(value, str) and value else None

        async def keep_refresh_token(token: str) -> None:
            async with st.transaction() as tx:
                await st.kv.set(tx, REFRESH_TOKEN_KEY, token, now=clock())

        auth = SalesforceAuth(
            settings.salesforce,
            transport=sf_transport,
            on_refresh_token=keep_refresh_token,
            refresh_token=stored_refresh,
            clock=clock,
        )
        on_call = budget.observer()
        salesforce = SalesforceClient(
            auth,
            api_version=settings.salesforce.api_version,
            transport=sf_transport,
            retry=http.RetryPolicy(),
            timeout_s=settings.salesforce.timeout_s,
            verify=settings.salesforce.verify_tls,
            on_call=on_call,
        )

        def sf_usage() -> tuple[int, int] | None:
            usage = salesforce.usage
            return None if usage is None else (usage.used, usage.limit)

        budget.org_usage_from("salesforce", sf_usage)
        pardot = PardotClient(
            base_url=settings.pardot.base_url,
            business_unit_id=settings.pardot.business_unit_id or "",
            tokens=auth,
            transport=pd_transport,
            max_concurrency=settings.pardot.max_concurrency,
            retry=http.RetryPolicy(),
            timeout_s=settings.pardot.timeout_s,
            verify=settings.pardot.verify_tls,
            on_call=on_call,
        )
        field_map = FieldMap.default().with_overrides(settings.fields)
        await budget.sync()
    except BaseException:
        if own_store:
            await st.aclose()
        raise
    return Runtime(
        settings=settings,
        store=st,
        auth=auth,
        salesforce=salesforce,
        pardot=pardot,
        budget=budget,
        field_map=field_map,
        config=sync_config(settings, field_map),
        clock=clock,
    )
