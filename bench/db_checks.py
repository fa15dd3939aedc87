"""Benchmark: what the migration-watch check suite costs the database, against two references.

Builds the sample app (``migration_watch.demo.sample``) with a ``conversations`` table of ``--rows``
rows (server-side ``generate_series``), the migration applied and a small fraction of anomalies,
VACUUM ANALYZE; then, for two scenarios (index ``idx_conversations_organization_id`` valid, then
marked invalid), measures three contenders, each under its own login role:

(a) ``suite``: ``Runner(config, Database(config.database)).run_once()`` with the shipped default
    tables (everything it sends, including its catalog and pg_stat_statements reads);
(b) ``checklist``: the checklist's three Phase 5.1 queries, as written;
(c) ``floor``: one bare ``SELECT count(*)`` per watched table.

Server time is the delta of ``pg_stat_statements`` ``total_exec_time`` (top-level statements,
split by ``userid``) around each contender's run; wall time is measured by the client. One
warm-up round, then ``--repeat`` rounds (contender order rotated each round); medians reported.

    nice .venv/bin/python bench/db_checks.py --rows 200000 --repeat 3

``--dsn``: use an existing database (superuser DSN, pg_stat_statements preloaded) instead of an
ephemeral cluster; it must be empty (or built by an earlier run, with ``--reuse``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
import structlog
import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from migration_watch.config import Config, default_config_text, parse_config
from migration_watch.db import Database
from migration_watch.demo import sample
from migration_watch.pgcluster import EphemeralCluster
from migration_watch.results import Result, Status
from migration_watch.runner import Runner

Conn = psycopg.Connection[Any]

INDEX = "idx_conversations_organization_id"
TABLES = sample.WATCHED_TABLES
DB_NAME = "mw_bench"

#: The checklist's Phase 5.1 queries, exactly as written (migration-checklist.md).
CHECKLIST_QUERIES: tuple[str, ...] = (
    """-- Conversations migration check
SELECT
  COUNT(*) as total_conversations,
  COUNT(organization_id) as with_org_id,
  COUNT(customer_id) as with_customer_id,
  COUNT(*) - COUNT(organization_id) as missing_org_id
FROM conversations;""",
    """-- Customer configs migration check
SELECT
  COUNT(*) as total_configs,
  COUNT(organization_id) as with_org_id,
  COUNT(customer_id) as with_customer_id
FROM customer_configs;""",
    """-- Check for orphaned records
SELECT c.id, c.domain_id, c.customer_id, c.organization_id
FROM conversations c
WHERE c.organization_id IS NULL
  AND c.customer_id IS NOT NULL;""",
)

FLOOR_QUERIES: tuple[str, ...] = tuple(f"SELECT count(*) FROM {t}" for t in TABLES)

CONTENDERS = ("suite", "checklist", "floor")
LABELS = {
    "suite": "(a) migration-watch suite",
    "checklist": "(b) checklist Phase 5.1 queries",
    "floor": "(c) floor: count(*) per table",
}
ROLES = {c: f"mw_bench_{c}" for c in CONTENDERS}


# --------------------------------------------------------------------------- measurements


@dataclass(frozen=True)
class Sample:
    """One contender's run: server time from pg_stat_statements, wall time from the client."""

    exec_ms: float
    plan_ms: float
    calls: int
    wall_ms: float


@dataclass
class ScenarioResult:
    name: str
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    #: (contender, queryid) -> (calls, exec ms, plan ms) over the measured rounds.
    statements: dict[tuple[str, int], tuple[int, float, float]] = field(default_factory=dict)
    texts: dict[int, str] = field(default_factory=dict)
    suite_results: tuple[Result, ...] = ()
    truth_problems: list[str] = field(default_factory=list)

    def median(self, contender: str, attr: str) -> float:
        return statistics.median(float(getattr(s, attr)) for s in self.samples[contender])


_StatKey = tuple[int, int]  # (userid, queryid)
_StatVal = tuple[int, float, float]  # calls, total_exec_time, total_plan_time


class Stats:
    """Reads pg_stat_statements as the superuser (its own statements are not counted)."""

    def __init__(self, admin: Conn, schema: str, role_oids: Mapping[str, int]) -> None:
        self._admin = admin
        self._fn = sql.Identifier(schema, "pg_stat_statements")
        self._oids = dict(role_oids)
        self._contender = {oid: c for c, oid in role_oids.items()}

    def snapshot(self) -> dict[_StatKey, _StatVal]:
        rows = self._admin.execute(
            sql.SQL(
                "SELECT userid, queryid, calls, total_exec_time, total_plan_time"
                " FROM {}(false) WHERE toplevel AND userid = ANY(%s)"
                " AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).format(self._fn),
            (list(self._oids.values()),),
        ).fetchall()
        return {(int(r[0]), int(r[1])): (int(r[2]), float(r[3]), float(r[4])) for r in rows}

    def texts(self) -> dict[int, str]:
        rows = self._admin.execute(
            sql.SQL("SELECT queryid, query FROM {}(true) WHERE userid = ANY(%s)").format(self._fn),
            (list(self._oids.values()),),
        ).fetchall()
        return {int(r[0]): str(r[1]) for r in rows if r[0] is not None}

    def totals(self, snap: Mapping[_StatKey, _StatVal], contender: str) -> _StatVal:
        oid = self._oids[contender]
        vals = [v for (u, _), v in snap.items() if u == oid]
        return (sum(v[0] for v in vals), sum(v[1] for v in vals), sum(v[2] for v in vals))

    def diff(
        self, before: Mapping[_StatKey, _StatVal], after: Mapping[_StatKey, _StatVal]
    ) -> dict[tuple[str, int], _StatVal]:
        out: dict[tuple[str, int], _StatVal] = {}
        for key, (calls, ex, pl) in after.items():
            b = before.get(key, (0, 0.0, 0.0))
            if calls - b[0] > 0:
                out[(self._contender[key[0]], key[1])] = (calls - b[0], ex - b[1], pl - b[2])
        return out


# --------------------------------------------------------------------------- contenders


class Contenders:
    """The three ways to look at the migration, each behind its own login role."""

    def __init__(self, config: Config, dsns: Mapping[str, str]) -> None:
        self.db = Database(config.database)
        self.runner = Runner(config, self.db)
        self._conns: dict[str, Conn] = {
            c: psycopg.connect(dsns[c], autocommit=True, prepare_threshold=None)
            for c in ("checklist", "floor")
        }
        self.last_suite: tuple[Result, ...] = ()
        self.last_rows: dict[str, list[Any]] = {}

    def run(self, contender: str) -> None:
        if contender == "suite":
            outcome = self.runner.run_once()
            assert outcome is not None
            self.last_suite = outcome.results
            return
        queries = CHECKLIST_QUERIES if contender == "checklist" else FLOOR_QUERIES
        conn = self._conns[contender]
        rows: list[Any] = []
        for q in queries:
            rows.append(conn.execute(sql.SQL(q)).fetchall())
        self.last_rows[contender] = rows

    def close(self) -> None:
        self.db.close()
        for conn in self._conns.values():
            conn.close()


def measure(contenders: Contenders, stats: Stats, contender: str) -> Sample:
    before = stats.snapshot()
    start = time.perf_counter()
    contenders.run(contender)
    wall = (time.perf_counter() - start) * 1000
    after = stats.snapshot()
    b = stats.totals(before, contender)
    a = stats.totals(after, contender)
    return Sample(exec_ms=a[1] - b[1], plan_ms=a[2] - b[2], calls=a[0] - b[0], wall_ms=wall)


def run_scenario(
    name: str, admin: Conn, contenders: Contenders, stats: Stats, repeat: int
) -> ScenarioResult:
    res = ScenarioResult(name=name, samples={c: [] for c in CONTENDERS})
    for c in CONTENDERS:  # warm-up round: caches, pool connections, query_ratio's first poll
        measure(contenders, stats, c)
    start = stats.snapshot()
    for i in range(repeat):
        order = CONTENDERS[i % 3 :] + CONTENDERS[: i % 3]
        for c in order:
            res.samples[c].append(measure(contenders, stats, c))
        _progress(f"  {name}: round {i + 1}/{repeat} done")
    res.statements = stats.diff(start, stats.snapshot())
    res.texts = stats.texts()
    res.suite_results = contenders.last_suite
    res.truth_problems = _compare_truth(admin, contenders)
    return res


def _compare_truth(admin: Conn, contenders: Contenders) -> list[str]:
    """The suite's numbers against plain SQL, and the floor's counts (RLS bypassed?)."""
    t = sample.truth(admin)
    problems: list[str] = []
    got: dict[tuple[str, str], Mapping[str, Any]] = {
        (r.check, r.subject): r.observed for r in contenders.last_suite
    }
    for r in contenders.last_suite:
        if r.status is Status.ERROR:
            problems.append(f"{r.check} {r.subject}: error: {r.message}")
    for table in TABLES:
        tt = t[table]
        subject = tt.subject
        want = {
            ("coverage", "total"): tt.total,
            ("coverage", "missing_new"): tt.missing_new,
            ("coverage", "with_legacy"): tt.with_legacy,
            ("orphans", "orphans"): tt.orphans,
        }
        if table == "conversations":
            want[("post_deploy_writes", "post_deploy_missing")] = tt.post_deploy_missing
        for (check, key), value in want.items():
            seen = got.get((check, subject), {}).get(key)
            if seen != value:
                problems.append(f"{check} {subject}.{key}: suite {seen!r} != truth {value!r}")
    floor = contenders.last_rows.get("floor", [])
    for table, rows in zip(TABLES, floor, strict=False):
        if rows and rows[0][0] != t[table].total:
            problems.append(f"floor count({table}) = {rows[0][0]} != {t[table].total}")
    return problems


# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class Anomalies:
    orphans: int
    missing_without_legacy: int
    post_deploy_orphans: int


def anomalies_for(rows: int) -> Anomalies:
    """A realistic small fraction: 0.05 % orphans, 0.01 % missing both, 0.02 % post-deploy."""
    return Anomalies(
        orphans=max(7, rows // 2000),
        missing_without_legacy=max(5, rows // 10_000),
        post_deploy_orphans=max(4, rows // 5000),
    )


def build(admin: Conn, rows: int, organizations: int, messages: int) -> Anomalies:
    """Schema, migration, data (migration applied first: no backfill pass), anomalies."""
    sample.install_extensions(admin)
    sample.load_schema(admin)
    sample.apply_migration(admin)
    sample.populate(
        admin,
        organizations=organizations,
        conversations=rows,
        domains_per_org=3,
        messages_per_conversation=messages,
        vacuum=False,
    )
    an = anomalies_for(rows)
    before = sample.DEPLOYED_AT - timedelta(days=1)
    sample.add_missing_without_legacy(
        admin, "conversations", an.missing_without_legacy, created_at=before
    )
    sample.add_orphans(admin, "conversations", an.orphans, created_at=before)
    sample.add_post_deploy_rows(admin, an.post_deploy_orphans, sample.DEPLOYED_AT)
    sample.add_missing_without_legacy(admin, "customer_configs", 1, created_at=before)
    sample.add_orphans(admin, "customer_configs", 2, created_at=before)
    sample.vacuum_analyze(admin)
    return an


def create_roles(admin: Conn, ext_schema: str, *, syncscan: bool = True) -> dict[str, str]:
    """One login role per contender; returns their passwords.

    BYPASSRLS for all three (the README's alternative to a ``USING (true)`` policy): the
    watched tables have RLS enabled, so without it every count would be 0 (default deny).
    ``syncscan=False`` runs every contender with ``synchronize_seqscans = off``.
    """
    passwords: dict[str, str] = {}
    tables = sql.SQL(", ").join(sql.Identifier(sample.SCHEMA, t) for t in TABLES)
    for contender, role in ROLES.items():
        pw = secrets.token_urlsafe(18)
        passwords[contender] = pw
        ident = sql.Identifier(role)
        exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
        admin.execute(
            sql.SQL("{} ROLE {} LOGIN BYPASSRLS PASSWORD {}").format(verb, ident, sql.Literal(pw))
        )
        admin.execute(
            sql.SQL("ALTER ROLE {} SET pg_stat_statements.track_planning = on").format(ident)
        )
        admin.execute(
            sql.SQL("ALTER ROLE {} SET synchronize_seqscans = {}").format(
                ident, sql.SQL("on" if syncscan else "off")
            )
        )
        admin.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
        admin.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(tables, ident))
    suite = sql.Identifier(ROLES["suite"])
    admin.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(suite))
    admin.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(suite))
    admin.execute(
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(ext_schema), suite)
    )
    return passwords


def drop_roles(admin: Conn) -> None:
    for role in ROLES.values():
        ident = sql.Identifier(role)
        with contextlib.suppress(psycopg.Error):
            admin.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident))


def set_index_valid(admin: Conn, valid: bool) -> None:
    admin.execute(
        "UPDATE pg_catalog.pg_index SET indisvalid = %s WHERE indexrelid = %s::regclass",
        (valid, f"{sample.SCHEMA}.{INDEX}"),
    )


def suite_config(dsn: str) -> Config:
    """The shipped default configuration, pointed at ``dsn``, with the sample's deploy time.

    Only the sections that shape the check suite are kept (``database``, ``migration``,
    ``checks``); the service's own sections (http, schedule, state, logging) play no part in
    ``run_once``.
    """
    shipped = yaml.safe_load(default_config_text())
    data = {k: shipped[k] for k in ("database", "migration", "checks") if k in shipped}
    data["migration"]["deployed_at"] = sample.DEPLOYED_AT.isoformat()
    return parse_config(data, source="bench", env={"MIGRATION_WATCH_DSN": dsn})


# --------------------------------------------------------------------------- report


def _fmt_ms(v: float) -> str:
    return f"{v:,.1f}"


def _ratio(a: float, b: float) -> str:
    return "n/a" if b <= 0 else f"{a / b:.2f}"


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def report(res: ScenarioResult, repeat: int, top: int) -> None:
    print(f"\n=== scenario: {res.name} ===")
    head = (
        f"{'contender':<34}{'stmts/run':>10}{'server exec ms':>16}{'(min..max)':>20}"
        f"{'plan ms':>10}{'wall ms':>11}"
    )
    print(head)
    print("-" * len(head))
    for c in CONTENDERS:
        ss = res.samples[c]
        ex = [s.exec_ms for s in ss]
        span = f"{_fmt_ms(min(ex))}..{_fmt_ms(max(ex))}"
        print(
            f"{LABELS[c]:<34}{statistics.median(s.calls for s in ss):>10.0f}"
            f"{_fmt_ms(res.median(c, 'exec_ms')):>16}{span:>20}"
            f"{_fmt_ms(res.median(c, 'plan_ms')):>10}{_fmt_ms(res.median(c, 'wall_ms')):>11}"
        )
    a, b, f = (res.median(c, "exec_ms") for c in CONTENDERS)
    aw, bw, fw = (res.median(c, "wall_ms") for c in CONTENDERS)
    print(
        f"ratios, server exec time: (a)/(b) = {_ratio(a, b)}   (a)/(c) = {_ratio(a, f)}"
        f"      wall time: (a)/(b) = {_ratio(aw, bw)}   (a)/(c) = {_ratio(aw, fw)}"
    )
    counts: dict[str, int] = {}
    for r in res.suite_results:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    verdict = (
        "numbers agree with the truth"
        if not res.truth_problems
        else "MISMATCH: " + "; ".join(res.truth_problems)
    )
    print(f"suite: {len(res.suite_results)} results ({summary}); {verdict}")
    for c in ("suite", "checklist"):
        rows = sorted(
            ((v, qid) for (cc, qid), v in res.statements.items() if cc == c),
            key=lambda x: -x[0][1],
        )
        print(f"{LABELS[c]}: statements by server time, per run (mean of {repeat} runs)")
        for (calls, exec_ms, plan_ms), qid in rows[:top]:
            text = _one_line(res.texts.get(qid, "?"), 96)
            print(
                f"  {exec_ms / repeat:>10.2f} ms {plan_ms / repeat:>7.2f} plan"
                f" {calls / repeat:>4.1f}x  {text}"
            )
        if len(rows) > top:
            rest = sum(v[1] for v, _ in rows[top:]) / repeat
            print(f"  {rest:>10.2f} ms  ({len(rows) - top} more statements)")


def summary(results: Sequence[ScenarioResult]) -> None:
    print("\n=== summary: server exec time (median), target (a)/(b) <= 1.0 ===")
    print(
        f"{'scenario':<50}{'(a) ms':>10}{'(b) ms':>10}{'(c) ms':>10}"
        f"{'(a)/(b)':>9}{'(a)/(c)':>9}  target"
    )
    for res in results:
        a, b, f = (res.median(c, "exec_ms") for c in CONTENDERS)
        met = "met" if b > 0 and a / b <= 1.0 else "NOT met"
        print(
            f"{res.name:<50}{_fmt_ms(a):>10}{_fmt_ms(b):>10}{_fmt_ms(f):>10}"
            f"{_ratio(a, b):>9}{_ratio(a, f):>9}  {met}"
        )


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def _target(dsn: str | None) -> Iterator[tuple[Callable[..., str], bool]]:
    """``(dsn_for(user=None, password=None), ephemeral)`` for the benchmark database."""
    if dsn is not None:
        base = conninfo_to_dict(dsn)

        def from_dsn(user: str | None = None, password: str | None = None) -> str:
            params: dict[str, Any] = dict(base)
            if user is not None:
                params.update(user=user, password=password)
            return make_conninfo("", **params)

        yield from_dsn, False
        return
    with EphemeralCluster() as cluster:
        cluster.create_database(DB_NAME)

        def from_cluster(user: str | None = None, password: str | None = None) -> str:
            if user is None:
                return cluster.dsn(DB_NAME)
            return cluster.dsn(DB_NAME, user=user, password=password or "")

        yield from_cluster, True


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=5_000_000, help="conversations (default 5M)")
    p.add_argument("--repeat", type=int, default=5, help="measured rounds (default 5)")
    p.add_argument("--organizations", type=int, default=200, help="organizations (x3 domains)")
    p.add_argument("--messages", type=int, default=0, help="messages per conversation")
    p.add_argument("--dsn", help="superuser DSN of an existing database (default: ephemeral)")
    p.add_argument("--reuse", action="store_true", help="with --dsn: use the data already there")
    p.add_argument("--top", type=int, default=8, help="statements listed per contender")
    p.add_argument(
        "--no-syncscan",
        action="store_true",
        help="run the contenders with synchronize_seqscans = off (worst case for the suite)",
    )
    args = p.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        p.error("--rows and --repeat must be >= 1")

    logging.getLogger().setLevel(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    with _target(args.dsn) as (dsn_for, ephemeral):
        admin: Conn = psycopg.connect(dsn_for(), autocommit=True)
        try:
            return _bench(args, admin, dsn_for, ephemeral)
        finally:
            if not ephemeral:
                drop_roles(admin)
            admin.close()


def _bench(args: argparse.Namespace, admin: Conn, dsn_for: Callable[..., str], eph: bool) -> int:
    version = admin.execute("SHOW server_version").fetchone()
    exists = admin.execute("SELECT to_regclass('public.conversations') IS NOT NULL").fetchone()
    if exists and exists[0] and not args.reuse:
        print("public.conversations already exists: use an empty database or --reuse")
        return 2
    began = time.perf_counter()
    if not (exists and exists[0]):
        _progress(f"building {args.rows:,} conversations …")
        an = build(admin, args.rows, args.organizations, args.messages)
        built = f"{time.perf_counter() - began:.1f} s"
    else:
        an = anomalies_for(args.rows)
        built = "reused"
    ext = admin.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pg_stat_statements'"
    ).fetchone()
    if ext is None:
        print("pg_stat_statements is not installed in this database")
        return 2
    passwords = create_roles(admin, str(ext[0]), syncscan=not args.no_syncscan)
    oids = {
        c: int(r[0])
        for c in CONTENDERS
        if (
            r := admin.execute(
                "SELECT oid FROM pg_roles WHERE rolname = %s", (ROLES[c],)
            ).fetchone()
        )
    }
    stats = Stats(admin, str(ext[0]), oids)
    dsns = {c: dsn_for(user=ROLES[c], password=passwords[c]) for c in CONTENDERS}
    sizes = admin.execute(
        "SELECT pg_size_pretty(pg_table_size('public.conversations')),"
        " pg_size_pretty(pg_indexes_size('public.conversations')),"
        " current_setting('shared_buffers'), current_setting('max_parallel_workers_per_gather')"
    ).fetchone()
    assert sizes is not None
    assert version is not None
    print("migration-watch database-check benchmark")
    print(
        f"PostgreSQL {version[0]} ({'ephemeral cluster' if eph else 'existing database'});"
        f" shared_buffers {sizes[2]}; max_parallel_workers_per_gather {sizes[3]};"
        f" synchronize_seqscans {'off' if args.no_syncscan else 'on'}"
    )
    print(
        f"conversations: {args.rows:,} rows + {an.orphans:,} orphans,"
        f" {an.missing_without_legacy:,} rows missing both columns,"
        f" {an.post_deploy_orphans:,} post-deploy orphans; heap {sizes[0]}, indexes {sizes[1]};"
        f" {args.organizations * 3:,} customer_configs and scraper_configs; build {built}"
    )
    print(f"each figure: median of {args.repeat} runs after 1 warm-up round")

    results: list[ScenarioResult] = []
    contenders = Contenders(suite_config(dsns["suite"]), dsns)
    try:
        for valid in (True, False):
            set_index_valid(admin, valid)
            name = f"index {INDEX} {'valid' if valid else 'INVALID'}"
            _progress(f"measuring: {name}")
            res = run_scenario(name, admin, contenders, stats, args.repeat)
            results.append(res)
            report(res, args.repeat, args.top)
    finally:
        contenders.close()
        set_index_valid(admin, True)
    summary(results)
    return 0 if all(not r.truth_problems for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
