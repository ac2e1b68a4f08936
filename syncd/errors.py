"""The syncd exception tree: every error is named by how it is handled.

```
SyncdError
 ├── ConfigError               bad or missing settings: the CLI exits 2 naming the setting to fix
 ├── StoreError                the sync-state database failed (connection, lock, migration)
 ├── BudgetExhaustedError      not a failure but a control signal: the daily API limit
 │    │                        (REQUEST_LIMIT_EXCEEDED, Pardot 122) or syncd's own share of it is
 │    │                        used up; the side pauses and the items go back without an attempt
 │    └── SidePausedError      an operator paused the side (the console): wait for its resume
 └── APIError                  a call to Salesforce or Pardot failed (system, status, code, message)
      ├── RetriableAPIError    try again later: 5xx, 429, timeouts, resets, UNABLE_TO_LOCK_ROW,
      │                        Pardot 66 / 183 / 214, a malformed or truncated answer
      ├── PermanentAPIError    retrying cannot help: validation, required field, invalid email,
      │    │                   duplicate rule, converted lead, deleted record: to the error queue
      │    └── PagingLoopError a paging token repeated: the API is misbehaving, stop this read
      └── AuthError            the token endpoint refused the credentials (invalid_grant,
                               invalid_client_id): fix the [salesforce] settings
```

`RetriableAPIError` is what the HTTP retry policy (tenacity, in `syncd.clients.http`) retries;
once its attempts are spent the error reaches the pipeline, which re-queues the item later.
`BudgetExhaustedError` stands beside `APIError` on purpose: code that handles a failed call
(`except APIError`) never swallows a spent budget by accident, so it reaches the loop that pauses
the side, and no item spends an attempt on it.
Messages never contain a secret: payloads and tokens are not quoted, only codes and API messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class SyncdError(Exception):
    """Base of every error syncd raises on purpose."""


class ConfigError(SyncdError):
    """A setting is missing or invalid; the message names the setting and how to set it."""


class StoreError(SyncdError):
    """The sync-state store failed (connection lost, database locked, schema not migrated)."""


@dataclass(frozen=True, slots=True)
class ErrorDetail:
    """One error entry of an API answer: Salesforce `errorCode`/`statusCode`, or a Pardot code."""

    code: str
    message: str
    fields: tuple[str, ...] = ()


@dataclass(eq=False)
class APIError(SyncdError):
    """A call to an API failed.

    Attributes:
        system: "salesforce" or "pardot".
        status: the HTTP status, or None when no answer arrived (timeout, reset).
        code: the API's error code (`REQUEST_LIMIT_EXCEEDED`, `"66"`), or a syncd code such as
            `BAD_RESPONSE` for answers that could not be read.
        message: the API's message, safe to log (never a payload or token).
        details: every error entry of the answer.
    """

    system: str
    status: int | None
    code: str
    message: str
    details: tuple[ErrorDetail, ...] = field(default=())
    retry_after_s: float | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "no response"
        return f"{self.system} {status} {self.code}: {self.message}"


class RetriableAPIError(APIError):
    """A transient failure: retry with backoff (honouring `retry_after_s` when the API gave one)."""


@dataclass(eq=False)
class BudgetExhaustedError(SyncdError):
    """The daily API budget is spent (the org's, or syncd's configured share): pause this side.

    A control signal, not a failed call: the items being synced go back to the queue without
    using an attempt, and the side is not called again until `retry_after_s` has passed.

    Attributes:
        system: "salesforce" or "pardot", the side to pause.
        status: the HTTP status of the refusal, or None when syncd's own budget said stop.
        code: `REQUEST_LIMIT_EXCEEDED`, `"122"`, or `BUDGET_PAUSED` (syncd's own share).
        message: what happened and what to change, safe to log.
        retry_after_s: how long until the side may be tried again, when known.
    """

    system: str
    status: int | None
    code: str
    message: str
    retry_after_s: float | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        status = f"HTTP {self.status}" if self.status is not None else "budget"
        return f"{self.system} {status} {self.code}: {self.message}"


class SidePausedError(BudgetExhaustedError):
    """An operator paused this side from the console: poll and sync nothing until resumed.

    A `BudgetExhaustedError` so every loop that already waits out a spent budget (pollers skip
    the side, workers wait, `syncd once` exits 3) treats an operator's pause the same way.
    """


class PermanentAPIError(APIError):
    """Retrying cannot help; the item goes to the sync error queue with this code and message."""


class PagingLoopError(PermanentAPIError):
    """A paging token (`nextRecordsUrl`, `nextPageToken`) came back twice: the read was stopped."""


class AuthError(APIError):
    """The token endpoint refused the credentials; the operator must fix the settings."""
