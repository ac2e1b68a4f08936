"""Logging: structlog events, one JSON object a line when not on a terminal; secrets never logged.

Use `log = logs.get(__name__)` and `log.info("lead_created", prospect_id=..., lead_id=...)`.
Three guards keep secrets out of every line: `SecretStr` values render masked; keys that name a
secret (`token`, `password`, `secret`, `authorization`, ...) are masked whatever their value; and
every secret value registered with `register_secret` (the CLI registers all configured credentials
and each access token the clients obtain) is replaced wherever it appears in any string.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from pydantic import SecretStr

MASK = "**********"
_SECRET_KEY = re.compile(
    r"(token|secret|password|passwd|authorization|assertion|private_key|api_key|cookie)", re.I
)
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str | SecretStr | None) -> None:
    """Never let `value` appear in a log line (ignored when empty or too short to be a secret)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)


def register_secrets(values: Iterable[str | SecretStr | None]) -> None:
    for value in values:
        register_secret(value)


def redact(text: str) -> str:
    """`text` with every registered secret value replaced by the mask."""
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _scrub(value: Any, key: str = "") -> Any:
    if key and _SECRET_KEY.search(key) and value not in (None, "", False):
        return MASK
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    return value


def _name_processor(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # structlog reserves the keyword `logger`; `get` carries the name under another key.
    name = event_dict.pop("_logger_name", None)
    if name is not None:
        event_dict = {"logger": name, **event_dict}
    return event_dict


def _scrub_processor(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _scrub(event_dict[key], key if key != "event" else "")
    return event_dict


def _scrub_rendered(logger: Any, method: str, rendered: Any) -> Any:
    # Last line of defence: tracebacks are rendered after the per-field scrub.
    return redact(rendered) if isinstance(rendered, str) else rendered


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog and the stdlib root logger (used by uvicorn, alembic, asyncio)."""
    stream = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    shared: list[Any] = [
        _name_processor,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            _scrub_processor,
            renderer,
            _scrub_rendered,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, _scrub_processor],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
                _scrub_rendered,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.getLevelName(level.upper()), logging.INFO))
    # alembic logs its plugin setup at INFO on import; the store logs `schema_migrated` itself
    for noisy in ("httpx", "httpcore", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get(name: str | None = None) -> Any:
    """A structlog logger; the name travels as the `logger` field.

    The logger stays lazy (it binds on first use, not at import), so module-level loggers follow
    whatever `configure` set last, such as the demo's quieter level.
    """
    if not structlog.is_configured():
        configure()  # scripts and libraries that never called configure get the same format
    return structlog.get_logger() if name is None else structlog.get_logger(_logger_name=name)
