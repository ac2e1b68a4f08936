"""Logs: JSON lines off a terminal; secrets never appear, whatever field carries them."""

from __future__ import annotations

import io
import json

from pydantic import SecretStr

from syncd import logs


def _capture() -> io.StringIO:
    buf = io.StringIO()
    logs.configure("debug", "auto", stream=buf)
    return buf


def test_json_lines_with_event_and_fields() -> None:
    buf = _capture()
    logs.get("t").info("lead_created", prospect_id=1001, lead_id="00Q1")
    line = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert line["event"] == "lead_created"
    assert line["prospect_id"] == 1001
    assert line["level"] == "info"
    assert "timestamp" in line


def test_secrets_never_logged() -> None:
    secret = "refresh-Token-Value-123456"
    access = "00D000000000001!AQ0AQK.access.token.value"
    logs.register_secret(secret)
    logs.register_secret(access)
    buf = _capture()
    log = logs.get("t")
    log.info("x", detail=f"token was {secret}")
    log.info("y", client_secret=SecretStr("hidden-by-type"))
    log.info("z", access_token="anything-at-all", nested={"password": "pw-123456", "ok": access})
    try:
        raise RuntimeError(f"call failed with Bearer {access}")
    except RuntimeError:
        log.exception("boom")
    out = buf.getvalue()
    for value in (secret, access, "hidden-by-type", "anything-at-all", "pw-123456"):
        assert value not in out
    assert logs.MASK in out


def test_stdlib_logging_goes_through_the_scrubber() -> None:
    import logging

    logs.register_secret("stdlib-secret-987654")
    buf = _capture()
    logging.getLogger("alembic.runtime.migration").warning("oops stdlib-secret-987654")
    assert "stdlib-secret-987654" not in buf.getvalue()
    assert "oops" in buf.getvalue()
