"""``migration-watch`` command line.

Exit codes (highest applicable wins): 2 bad configuration or usage, 3 something could not be
measured (database unreachable, timeout, permission), 1 a check failed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

import structlog

from . import __version__
from .config import DEFAULT_CONFIG_PATHS, Config, default_config_text, load_config
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

    p = sub.add_parser("run", help="run the service (/metrics, /health, the 7-day cadence)")
    _add_config(p)
    p.add_argument("--deployed-at", type=_timestamp, metavar="T", help="deployment time (T0)")

    p = sub.add_parser("schedule", help="print the plan of the monitoring week")
    _add_config(p)
    p.add_argument("--deployed-at", type=_timestamp, metavar="T", help="deployment time (T0)")
    p.add_argument("--format", choices=["table", "json"], default="table")

    p = sub.add_parser("baseline", help="the pre-deploy performance baseline")
    bsub = p.add_subparsers(dest="baseline_command", metavar="ACTION", parser_class=_Parser)
    bsub.required = True
    b = bsub.add_parser("record", help="record statement and probe timings now")
    _add_config(b)
    b = bsub.add_parser("show", help="print the recorded baseline")
    _add_config(b)

    p = sub.add_parser("report", help="the week's report: history, runs, verdict")
    _add_config(p)
    p.add_argument("--format", choices=["markdown", "html", "json"], default="markdown")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--deployed-at", type=_timestamp, metavar="T", help="deployment time (T0)")

    p = sub.add_parser("demo", help="the whole week in minutes on a throw-away database")
    p.add_argument("--speed", type=float, help="clock speed (default: 7 days in about 5 minutes)")
    p.add_argument("--output-dir", default="reports", help="where to write the report")
    p.add_argument("--listen", default="127.0.0.1:9719", help="address of /metrics and /health")

    p = sub.add_parser("logs", help="application log tools")
    lsub = p.add_subparsers(dest="logs_command", metavar="ACTION", parser_class=_Parser)
    lsub.required = True
    lg = lsub.add_parser("scan", help="classify log files once and print the counts")
    _add_config(lg)
    lg.add_argument("files", nargs="+", metavar="FILE", help="log files (- for stdin)")
    lg.add_argument("--format", choices=["table", "json"], default="table")
    lg.add_argument(
        "--log-format",
        dest="line_format",
        choices=["json", "logfmt", "text"],
        default=None,
        help="line format (default: the first file source's, else json)",
    )

    p = sub.add_parser("alerts", help="alert states and receiver tests")
    asub = p.add_subparsers(dest="alerts_command", metavar="ACTION", parser_class=_Parser)
    asub.required = True
    a = asub.add_parser("list", help="current alert states (from the state store)")
    _add_config(a)
    a.add_argument("--all", action="store_true", help="include inactive alerts")
    a.add_argument("--format", choices=["table", "json"], default="table")
    a = asub.add_parser("test", help="send a clearly marked test notification")
    _add_config(a)
    a.add_argument("--receiver", help="only this receiver (default: all)")

    p = sub.add_parser("mark-deployed", help="tell the running daemon the new code is deployed")
    _add_config(p)
    p.add_argument("--at", type=_timestamp, metavar="T", help="deployment time (default: now)")
    p.add_argument("--url", help="daemon URL (default: from http.listen)")

    p = sub.add_parser("trigger", help="ask the running daemon for an extra run now")
    _add_config(p)
    p.add_argument("--url", help="daemon URL (default: from http.listen)")

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", parser_class=_Parser)
    csub.required = True
    v = csub.add_parser("validate", help="validate a configuration file")
    _add_config(v)
    csub.add_parser("example", help="print the shipped example configuration")
    return parser


def _timestamp(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: use ISO 8601, e.g. 2025-10-23T09:00:00Z"
        ) from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"time {text!r} needs a timezone, e.g. a trailing Z")
    return value.astimezone(UTC)


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


def _write_rows(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Aligned columns; the last one is left ragged (it holds free text)."""
    n = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(n)]
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(n)]
        out.write("  ".join([*cells, row[n]]).rstrip() + "\n")


def render_table(results: Sequence[Result], out: TextIO) -> None:
    rows = [("CHECK", "SUBJECT", "STATUS", "VALUE", "MESSAGE")]
    rows += [(r.check, r.subject, r.status.value.upper(), _value(r), r.message) for r in results]
    _write_rows(rows, out)


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
        baseline = None
        if config.probes and config.state.path.exists():
            from .state import SqliteStateStore

            with SqliteStateStore(config.state.path) as store:
                baseline = store.load_baseline()
        runner = Runner(config, db, baseline=lambda: baseline)
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
    configure_logging(config.logging.level, args.log_format or config.logging.format)
    Service(config, deployed_at=args.deployed_at).serve_forever()
    return EXIT_OK


def cmd_schedule(args: argparse.Namespace, out: TextIO) -> int:
    from .cadence import Schedule
    from .state import SqliteStateStore

    config = _config(args)
    now = datetime.now(UTC)
    completed: dict[int, Any] = {}
    extras: list[datetime] = []
    deployed_at, source = args.deployed_at, "cli"
    if config.state.path.exists():
        with SqliteStateStore(config.state.path) as store:
            completed = dict(store.completed_runs())
            extras = store.extra_runs()
            marker = store.get_deployment()
        if deployed_at is None and marker is not None:
            deployed_at, source = marker.deployed_at, marker.source
    if deployed_at is None and config.migration.deployed_at is not None:
        deployed_at, source = config.migration.deployed_at, "config"
    if deployed_at is None:
        raise ConfigError(
            "deployment time unknown: give --deployed-at, set migration.deployed_at,"
            " or run `migration-watch mark-deployed` against the daemon"
        )
    schedule = Schedule(deployed_at, config.cadence.phases())
    doc = schedule.to_json(now, completed, extras, source=source)
    if args.format == "json":
        out.write(json.dumps(doc, indent=2) + "\n")
        return EXIT_OK
    out.write(f"deployed_at {doc['deployed_at']} (source: {source})\n")
    rows = [("AT", "DAY", "PHASE", "STATE")]
    rows += [(r["at"], str(r["day"]), r["phase"], r["state"]) for r in doc["runs"]]
    _write_rows(rows, out)
    out.write(f"verdict_at {doc['verdict_at']}\n")
    return EXIT_OK


def _daemon_url(config: Config, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    host = config.http.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.http.port}"


def _post(config: Config, url: str | None, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    import httpx

    headers = {}
    token = config.http.admin_token
    if token is not None:
        headers["Authorization"] = f"Bearer {token.get_secret_value()}"
    target = _daemon_url(config, url) + path
    try:
        resp = httpx.post(target, json=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise MigrationWatchError(f"cannot reach the daemon at {target}: {exc}") from None
    try:
        data = resp.json()
    except ValueError:
        data = resp.text
    return resp.status_code, data


def cmd_baseline(args: argparse.Namespace, out: TextIO) -> int:
    from .baseline import record_baseline
    from .db import Database
    from .state import SqliteStateStore

    config = _config(args)
    if args.baseline_command == "show":
        if not config.state.path.exists():
            raise ConfigError(f"no state file at {config.state.path}: record a baseline first")
        with SqliteStateStore(config.state.path) as store:
            baseline = store.load_baseline()
        if baseline is None:
            out.write("no baseline recorded\n")
            return EXIT_FAIL
    else:
        with Database(config.database) as db:
            baseline = record_baseline(db, config, config.probes, datetime.now(UTC))
        with SqliteStateStore(config.state.path) as store:
            store.save_baseline(baseline)
    out.write(f"baseline recorded at {baseline.recorded_at.isoformat()}\n")
    out.write(f"  {len(baseline.statements)} statements on the watched tables\n")
    for p in baseline.probes:
        out.write(f"  probe {p.name}: median {p.median_seconds * 1000:.3f} ms\n")
    errors = dict(baseline.details.get("probe_errors") or {})
    for name, message in errors.items():
        out.write(f"  probe {name}: ERROR {message}\n")
    return EXIT_ERROR if errors else EXIT_OK


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from .report import build_report, render
    from .state import SqliteStateStore

    config = _config(args)
    if not config.state.path.exists():
        raise ConfigError(f"no state file at {config.state.path}: nothing recorded yet")
    with SqliteStateStore(config.state.path) as store:
        data = build_report(
            store,
            config=config,
            now=datetime.now(UTC),
            deployed_at=args.deployed_at,
            phases=config.cadence.phases(),
        )
    text = render(data, args.format)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        out.write(f"report written to {args.output}\n")
    else:
        out.write(text)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from .demo.run import main_demo

    if args.speed is not None and args.speed <= 0:
        raise ConfigError("--speed must be positive")
    return main_demo(args.speed, Path(args.output_dir), args.listen)


def cmd_logs(args: argparse.Namespace, out: TextIO) -> int:
    from .logs.classify import Classifier
    from .logs.config import FileSourceConfig, LogsConfig
    from .logs.scanner import scan_files

    legacy, new = "customer_id", "organization_id"
    logs = LogsConfig()
    explicit = getattr(args, "config", None)
    if explicit is not None or any(p.exists() for p in DEFAULT_CONFIG_PATHS):
        try:
            config = _config(args)
        except ConfigError:
            if explicit is not None:
                raise
        else:
            legacy, new = config.migration.legacy_column, config.migration.new_column
            logs = config.logs
    files = [s for s in logs.sources if isinstance(s, FileSourceConfig)]
    if files and args.line_format in (None, files[0].format):
        classifier = Classifier.for_source(files[0], legacy, new, logs.classes)
    else:
        classifier = Classifier(legacy, new, logs.classes, format=args.line_format or "json")
    missing = [f for f in args.files if f != "-" and not Path(f).is_file()]
    if missing:
        raise ConfigError(f"no such file: {', '.join(missing)}")
    try:
        report = scan_files(args.files, classifier)
    except OSError as exc:
        raise ConfigError(f"cannot read {exc.filename}: {exc.strerror}") from None
    if args.format == "json":
        out.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        out.write(report.to_table().rstrip("\n") + "\n")
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace, out: TextIO) -> int:
    from .alerting import Alerting
    from .state import SqliteStateStore

    config = _config(args)
    with SqliteStateStore(config.state.path) as store:
        alerting = Alerting(config.alerting, store, migration_name=config.migration.name)
        try:
            if args.alerts_command == "test":
                outcomes = alerting.send_test(args.receiver)
                for o in outcomes:
                    state = "OK" if o.ok else "FAILED"
                    detail = f"HTTP {o.status_code}" if o.status_code is not None else o.error
                    out.write(f"{o.receiver} ({o.type}): {state} {detail or ''}".rstrip() + "\n")
                if not outcomes:
                    out.write("no receivers configured (alerting.receivers)\n")
                    return EXIT_USAGE
                return EXIT_OK if all(o.ok for o in outcomes) else EXIT_ERROR
            alerts = alerting.list_alerts(None if args.all else ("pending", "firing", "resolved"))
        finally:
            alerting.close()
    if args.format == "json":
        out.write(json.dumps([a.to_json() for a in alerts], indent=2, default=str) + "\n")
        return EXIT_OK
    rows = [("ALERT", "STATE", "SEVERITY", "SUBJECT", "SINCE")]
    rows += [
        (
            a.alertname,
            a.state,
            a.severity,
            a.subject,
            a.active_since.isoformat() if a.active_since else "",
        )
        for a in alerts
    ]
    _write_rows(rows, out)
    return EXIT_OK


def cmd_mark_deployed(args: argparse.Namespace, out: TextIO) -> int:
    config = _config(args)
    body = {"at": args.at.isoformat()} if args.at else {}
    status, data = _post(config, args.url, "/deployment", body)
    out.write(json.dumps(data) + "\n")
    return EXIT_OK if status == 200 else EXIT_USAGE if status in (400, 401) else EXIT_ERROR


def cmd_trigger(args: argparse.Namespace, out: TextIO) -> int:
    config = _config(args)
    status, data = _post(config, args.url, "/run", {})
    out.write(json.dumps(data) + "\n")
    if status == 202:
        return EXIT_OK
    return EXIT_FAIL if status == 409 else EXIT_USAGE if status == 401 else EXIT_ERROR


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
    handlers = {
        "check": cmd_check,
        "run": cmd_run,
        "config": cmd_config,
        "schedule": cmd_schedule,
        "mark-deployed": cmd_mark_deployed,
        "trigger": cmd_trigger,
        "baseline": cmd_baseline,
        "report": cmd_report,
        "demo": cmd_demo,
        "alerts": cmd_alerts,
        "logs": cmd_logs,
    }
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
