"""A simulated world: the Salesforce and Pardot simulators seeded from one file, sharing tokens.

Real Pardot accepts the access tokens Salesforce issues; here both simulators share one
`TokenRegistry` for the same reason. `World` is what tests, `syncd simulate` and `syncd demo` use:
in-process through `transports()` (httpx.ASGITransport, no sockets), or over real HTTP when
`syncd simulate` serves the two apps with uvicorn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from syncd.clients.http import Transports
from syncd.simulators._base import Clock, Faults, TokenRegistry, wall_clock
from syncd.simulators.pardot import PardotSimulator
from syncd.simulators.salesforce import SalesforceSimulator

IN_PROCESS_SALESFORCE_URL = "http://salesforce.sim"
IN_PROCESS_PARDOT_URL = "http://pardot.sim"


class SeedError(ValueError):
    """The seed file is unreadable or not in the documented format."""


def example_seed_path() -> Path:
    """The small example seed shipped in `config/` (a checkout) or in the package (a wheel)."""
    here = Path(__file__).resolve()
    for candidate in (
        here.parents[2] / "config" / "example-seed.json",
        here.parent / "example-seed.json",
    ):
        if candidate.is_file():
            return candidate
    raise SeedError("the example seed config/example-seed.json is missing from this install")


def load_seed(path: str | Path) -> dict[str, Any]:
    """Read a seed file, with an error that names the file and the problem."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SeedError(f"seed file {p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedError(f"seed file {p}: cannot read it: {exc}") from None
    except json.JSONDecodeError as exc:
        raise SeedError(f"seed file {p}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not {"salesforce", "pardot"} <= set(data):
        raise SeedError(f'seed file {p}: expected an object with "salesforce" and "pardot" keys')
    return data


class World:
    """Both simulators, seeded, sharing one token registry and one clock."""

    def __init__(
        self,
        seed: dict[str, Any],
        *,
        clock: Clock = wall_clock,
        salesforce_faults: Faults | None = None,
        pardot_faults: Faults | None = None,
        token_ttl_s: float | None = None,
        salesforce_url: str = IN_PROCESS_SALESFORCE_URL,
        pardot_url: str = IN_PROCESS_PARDOT_URL,
    ) -> None:
        sf_seed = dict(seed.get("salesforce") or {})
        pd_seed = dict(seed.get("pardot") or {})
        ttl = token_ttl_s if token_ttl_s is not None else sf_seed.get("token_ttl_s")
        self.clock = clock
        self.tokens = TokenRegistry(clock, ttl_s=ttl)
        try:
            self.salesforce = SalesforceSimulator(
                sf_seed,
                tokens=self.tokens,
                faults=salesforce_faults,
                clock=clock,
                base_url=salesforce_url,
            )
            self.pardot = PardotSimulator(
                pd_seed, tokens=self.tokens, faults=pardot_faults, clock=clock, base_url=pardot_url
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SeedError(f"seed data rejected: {exc}") from exc
        self._seed = seed

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> World:
        return cls(load_seed(path), **kwargs)

    def transports(self) -> Transports:
        """In-process transports: the clients talk to the simulators with no sockets."""
        return Transports(
            salesforce=httpx.ASGITransport(app=self.salesforce.app),
            pardot=httpx.ASGITransport(app=self.pardot.app),
        )

    def settings_overrides(self) -> dict[str, Any]:
        """Settings sections that point syncd at these simulators (client credentials flow)."""
        oauth = (self._seed.get("salesforce") or {}).get("oauth") or {}
        return {
            "salesforce": {
                "login_url": self.salesforce.base_url,
                "auth_flow": "client_credentials",
                "client_id": oauth.get("client_id"),
                "client_secret": oauth.get("client_secret"),
            },
            "pardot": {
                "base_url": self.pardot.base_url,
                "business_unit_id": self.pardot.business_unit_id,
            },
        }

    def settings_env(self) -> dict[str, str]:
        """The same as `settings_overrides`, as SYNCD_* environment variables (for subprocesses)."""
        env: dict[str, str] = {}
        for section, values in self.settings_overrides().items():
            for key, value in values.items():
                if value is not None:
                    env[f"SYNCD_{section.upper()}__{key.upper()}"] = str(value)
        return env
