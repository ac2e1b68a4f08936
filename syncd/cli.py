"""The `syncd` command line: parse arguments, load settings, hand over to one command module.

Each command lives in `syncd/commands/<module>.py` as `async def run(args, settings) -> int`
(or `settings` is None for commands that need none, such as `simulate`). This module only parses,
loads settings, sets up logging and maps errors to exit codes: 2 for bad configuration or usage,
1 for a failure the command reports, 130 for an interrupt.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from syncd import __version__, logs
from syncd.commands._store import RunLock
from syncd.errors import APIError, AuthError, BudgetExhaustedError, ConfigError, StoreError
from syncd.settings import Settings, load_settings

# command -> (module under syncd.commands, needs settings, help line)
COMMANDS: dict[str, tuple[str, bool, str]] = {
    "run": ("run", True, "the daemon: pollers and workers until SIGTERM/SIGINT"),
    "once": ("once", True, "poll every feed once, drain the queue, print one summary line"),
    "demo": ("demo", False, "simulators in-process and the daemon on local SQLite, with a summary"),
    "simulate": ("simulate", False, "serve the Salesforce and Pardot simulators over HTTP"),
    "reprocess": ("reprocess", True, "queue prospects (or CRM records, or emails) now"),
    "status": ("status", True, "queue by state, oldest pending, errors, cursors, API usage"),
    "errors": ("errors", True, "the sync error queue: list, show, retry"),
    "history": ("history", True, "what was decided for a prospect, and why"),
    "preflight": ("preflight", True, "read-only report of what the first sync will do"),
    "migrate": ("migrate", True, "bring the database schema to the latest version"),
    "relink": ("relink", True, "rebuild links from sync.crm_link_field (the link's mirror)"),
    "console": ("console", True, "the web console and its JSON API from the store alone"),
    # check loads its own settings: a health check exits 0 or 1 (Docker reserves exit 2)
    "check": ("check", False, "config valid, database reachable and migrated, heartbeat fresh"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd",
        description="Sync Pardot prospects with Salesforce Leads and Contacts.",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        help="TOML settings file (default: $SYNCD_CONFIG, else ./syncd.toml if present)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    p: dict[str, argparse.ArgumentParser] = {
        name: sub.add_parser(name, parents=[common], help=help_, description=help_)
        for name, (_, _, help_) in COMMANDS.items()
    }
    p["once"].add_argument(
        "--dry-run", action="store_true", help="print every plan and write nothing"
    )
    p["relink"].add_argument(
        "--dry-run", action="store_true", help="report what would be rebuilt; write nothing"
    )
    p["once"].add_argument(
        "--wait-budget",
        action="store_true",
        help="when a side's API budget is spent, wait for it instead of exiting 3",
    )
    p["demo"].add_argument("--once", action="store_true", help="exit when the queue is drained")
    p["demo"].add_argument("--prospects", type=int, default=3000, help="size of the demo data")
    p["demo"].add_argument(
        "--database", metavar="URL", help="store URL (default: sqlite file demo.db here)"
    )
    s = p["simulate"]
    s.add_argument("--seed", metavar="FILE", help="seed file (JSON; docs/interfaces.md)")
    s.add_argument(
        "--generate",
        type=int,
        metavar="N",
        help="instead of --seed: a generated world of N prospects and their CRM twins",
    )
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--salesforce-port", type=int, default=8401, metavar="P")
    s.add_argument("--pardot-port", type=int, default=8402, metavar="Q")
    s.add_argument("--latency-ms", type=float, default=0.0, metavar="N")
    s.add_argument("--fault-rate", type=float, default=0.0, metavar="F")
    s.add_argument("--token-ttl-s", type=float, default=None, metavar="S")
    r = p["reprocess"]
    r.add_argument("ids", nargs="*", metavar="ID", help="Pardot prospect ids")
    r.add_argument("--crm-id", action="append", default=[], metavar="ID")
    r.add_argument("--email", action="append", default=[], metavar="ADDR")
    for name in ("status", "history", "preflight", "errors", "check", "once", "relink"):
        p[name].add_argument("--json", action="store_true", help="machine-readable output")
    p["history"].add_argument("id", metavar="ID", help="Pardot prospect id")
    p["preflight"].add_argument("--limit", type=int, default=10, metavar="N")
    p["console"].add_argument(
        "--listen", metavar="H:P", help="address to serve on (default: ops.listen, else :9108)"
    )
    e = p["errors"]
    e.add_argument("action", choices=["list", "show", "retry"])
    e.add_argument("ids", nargs="*", metavar="ID")
    e.add_argument("--all", action="store_true", help="retry every error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, needs_settings, _ = COMMANDS[args.command]
    settings: Settings | None = None
    run_lock: RunLock | None = None
    try:
        if needs_settings:
            settings = load_settings(args.config)
            logs.configure(settings.log.level, settings.log.format)
            register_configured_secrets(settings)
        else:
            logs.configure()
        if args.command == "run" and settings is not None:
            run_lock = RunLock.acquire(settings.database.url)  # one daemon per SQLite file
        module: Any = importlib.import_module(f"syncd.commands.{module_name}")
        return int(asyncio.run(module.run(args, settings)))
    except ConfigError as exc:
        print(f"syncd {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"syncd {args.command}: store error: {logs.redact(str(exc))}", file=sys.stderr)
        return 1
    except AuthError as exc:
        # Refused credentials are a configuration problem: the message names the settings.
        print(f"syncd {args.command}: login refused: {logs.redact(str(exc))}", file=sys.stderr)
        return 2
    except BudgetExhaustedError as exc:
        print(
            f"syncd {args.command}: {exc.system} API budget spent (nothing was lost; run again "
            f"later): {logs.redact(str(exc))}",
            file=sys.stderr,
        )
        return 3
    except APIError as exc:
        print(
            f"syncd {args.command}: {exc.system} API error (nothing was lost; run again "
            f"later): {logs.redact(str(exc))}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception:
        # A bug: log it through the scrubbing logger, never Python's raw (unredacted) traceback.
        logs.get(__name__).exception("command_crashed", command=args.command)
        return 1
    finally:
        if run_lock is not None:
            run_lock.release()


def register_configured_secrets(settings: Settings) -> None:
    """Tell the log scrubber every secret the settings hold."""
    sf = settings.salesforce
    logs.register_secrets(
        [
            sf.client_secret,
            sf.password,
            sf.refresh_token,
            settings.ops.bearer_token,
            settings.ops.viewer_token,
            settings.alerts.webhook_url,
        ]
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
