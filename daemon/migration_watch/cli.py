"""``migration-watch`` command line.

Exit codes (highest applicable wins): 2 bad configuration or usage, 3 something could not be
measured (database unreachable, timeout, permission), 1 a check failed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn, TextIO

import structlog

from . import __version__
from .config import Config, default_config_text, load_config
from .errors import ConfigError, MigrationWatchError
from .logsetup import configure_logging
from .results import Result, Status, overall_status

__all__ = ["EXIT_ERROR", "EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "exit_code_for", "main"]

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_ERROR = 3

log = structlog.get_logger(__name__)


def exit_code_for(results: Sequence[Result]) -> int:
    status = overall_status(results)
    return {Status.ERROR: EXIT_ERROR, Status.FAIL: EXIT_FAIL}.get(status, EXIT_OK)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="configuration file (default: ./migration-watch.yaml, config/migration-watch.yaml,"
        " /etc/migration-watch/migration-watch.yaml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="migration-watch",
        description="Watch a column-rename migration for the week after it ships.",
    )
    parser.add_argument("--version", action="version", version=f"migration-watch {__version__}")
    _add_config(parser)
    parser.add_argument(
        "--log-format", choices=["auto", "json", "console"], default=None, help="log format"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("check", help="run every check now and print the results")
    _add_config(p)
    p.add_argument("--once", action="store_true", help="run the suite once (the default)")
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = sub.add_parser("run", help="run the service (/metrics, /health, scheduled checks)")
    _add_config(p)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", parser_class=_Parser)
    csub.required = True
    v = csub.add_parser("validate", help="validate a configuration file")
    _add_config(v)
    csub.add_parser("example", help="print the shipped example configuration")
    return parser


def _config(args: argparse.Namespace) -> Config:
    return load_config(getattr(args, "config", None))


# ---------------------------------------------------------------------------- rendering


def _value(r: Result) -> str:
    o = r.observed
    keys = {
        "coverage": ("missing_new", "total"),
        "orphans": ("orphans",),
        "post_deploy_writes": ("post_deploy_missing",),
        "index_usage": ("idx_scan",),
        "rls": ("policies_on_new", "policies_on_legacy"),
        "query_ratio": ("legacy_ratio",),
    }.get(r.check, ())
    parts = [f"{k}={o[k]}" for k in keys if k in o and o[k] is not None]
    return " ".join(parts)


def render_table(results: Sequence[Result], out: TextIO) -> None:
    rows = [("CHECK", "SUBJECT", "STATUS", "VALUE", "MESSAGE")]
    rows += [(r.check, r.subject, r.status.value.upper(), _value(r), r.message) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        out.write("  ".join([*cells, row[4]]).rstrip() + "\n")


def check_document(
    config: Config, results: Sequence[Result], checked_at: datetime
) -> dict[str, Any]:
    """The JSON of ``check --once --format json`` (schema: schemas/check.schema.json)."""
    return {
        "migration": config.migration.name,
        "checked_at": checked_at.isoformat(),
        "status": overall_status(results).value,
        "checks": [r.to_json() for r in results],
    }


# ---------------------------------------------------------------------------- commands


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    from .db import Database
    from .runner import Runner

    config = _config(args)
    with Database(config.database) as db:
        runner = Runner(config, db)
        outcome = runner.run_once()
        assert outcome is not None
    if args.format == "json":
        doc = check_document(config, outcome.results, outcome.started_at)
        out.write(json.dumps(doc, indent=2, default=str) + "\n")
    else:
        render_table(outcome.results, out)
        out.write(f"\n{config.migration.name}: {outcome.status.value.upper()}\n")
    return exit_code_for(outcome.results)


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from .service import Service

    config = _config(args)
    Service(config).serve_forever()
    return EXIT_OK


def cmd_config(args: argparse.Namespace, out: TextIO) -> int:
    if args.config_command == "example":
        out.write(default_config_text())
        return EXIT_OK
    config = _config(args)
    out.write(
        f"{config.source}: OK (migration {config.migration.name},"
        f" {len(config.migration.tables)} tables)\n"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    configure_logging(fmt=args.log_format or "auto")
    handlers = {"check": cmd_check, "run": cmd_run, "config": cmd_config}
    try:
        return handlers[args.command](args, out)
    except ConfigError as exc:
        sys.stderr.write(f"migration-watch: invalid configuration\n{exc}\n")
        return EXIT_USAGE
    except MigrationWatchError as exc:
        sys.stderr.write(f"migration-watch: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
