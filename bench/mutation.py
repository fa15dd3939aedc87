"""Mutation testing of the counting and judging core: mutmut 3 per module, with its own tests.

    scripts/mutation                               # every group, every mutant (long: see docs)
    scripts/mutation cadence alerting.machine      # some groups
    scripts/mutation checks/coverage.py --sample 0.25 --seed 17 --sql

Each *group* (``GROUPS``) is a set of source files under ``daemon/migration_watch/`` and the
test files that are meant to catch a wrong number or a wrong decision in them. For each group
this driver

1. stages a copy of the project in ``.mutation/<group>/``: ``src/migration_watch`` (the whole
   package, the compiled ``logs/_fastscan*.so`` included), ``tests/``, the documents some tests
   read, and ``pyproject.toml`` with a ``[tool.mutmut]`` section for this group. mutmut names a
   mutant after its file's path and only strips a ``src/`` prefix, while the tests import
   ``migration_watch``: run from the repository root over ``daemon/migration_watch`` every
   mutant would be "no tests". mutmut then writes its ``mutants/`` tree inside the stage; the
   working tree is never written to;
2. lets mutmut generate the mutants, draws the sample (``--sample F``: a mutant is in it when a
   hash of ``seed:name`` falls below ``F``, so the same mutant stays in the sample from one run
   to the next while the code around it changes), and runs ``mutmut run`` on it;
3. reads mutmut's per-file results and prints one row per source file: mutants, killed,
   survived, no tests (no selected test reaches the mutated function: a survivor too),
   timeout, other, score = (killed + timeout) / mutants.

``--sql`` adds the SQL-text mutations (``bench/sql_mutation.py``: mutmut does not mutate inside
strings) for the files of the selected groups that hold SQL.

The stage stays after the run: ``cd .mutation/<group> && mutmut show <name>`` prints the diff
of a survivor, ``mutmut run <name>`` reruns it after a new test (see docs/testing.md).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "daemon" / "migration_watch"
STAGE_ROOT = ROOT / ".mutation"
# Files some of the selected tests read next to the tests (``parents[2]`` of a test file).
EXTRA_PATHS = ("README.md", "docs", "alerts", "config")


@dataclass(frozen=True)
class Group:
    """Source files (relative to ``migration_watch/``) and the tests that must catch them."""

    name: str
    files: tuple[str, ...]
    tests: tuple[str, ...]
    # Integration tests start their own PostgreSQL cluster in every mutant's run.
    database: bool = False


def _checks_files() -> tuple[str, ...]:
    return tuple(sorted(f"checks/{p.name}" for p in (PACKAGE / "checks").glob("*.py")))


GROUPS: dict[str, Group] = {
    g.name: g
    for g in (
        Group(
            "checks",
            _checks_files(),
            (
                "tests/integration/test_checks.py",
                "tests/integration/test_query_ratio.py",
                "tests/integration/test_latency.py",
                "tests/integration/test_least_privilege.py",
            ),
            database=True,
        ),
        Group(
            "verdict",
            tuple(
                f"verdict/{n}.py"
                for n in ("__init__", "criteria", "evaluate", "history", "model", "settings")
            ),
            (
                "tests/unit/test_verdict.py",
                "tests/unit/test_verdict_history.py",
                "tests/unit/test_verdict_settings.py",
                "tests/unit/test_report.py",
            ),
        ),
        Group("cadence", ("cadence.py",), ("tests/unit/test_cadence.py",)),
        Group(
            "baseline",
            ("baseline.py",),
            (
                "tests/integration/test_latency.py",
                "tests/integration/test_cli_and_service.py"
                "::test_baseline_record_then_latency_checks_in_check_once",
            ),
            database=True,
        ),
        Group(
            "alerting.rules",
            ("alerting/rules.py",),
            ("tests/unit/test_alerting_config.py", "tests/unit/test_alerting_machine.py"),
        ),
        Group(
            "alerting.machine",
            ("alerting/machine.py",),
            ("tests/unit/test_alerting_machine.py",),
        ),
        Group(
            "logs",
            ("logs/classify.py", "logs/counts.py", "logs/match.py"),
            (
                "tests/unit/test_logs_classify.py",
                "tests/unit/test_logs_native.py",
                "tests/unit/test_logs_scanner.py",
                "tests/unit/test_logs_follower.py",
                "tests/unit/test_logs_drain.py",
            ),
        ),
    )
}

# mutmut's exit codes (mutmut.stats.status_by_exit_code) folded into the table's columns.
_COLUMN_BY_EXIT_CODE: dict[int | None, str] = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
    -9: "timeout",  # SIGKILL one CPU second after the SIGXCPU limit
    None: "not run",
}
COLUMNS = ("mutants", "killed", "survived", "no tests", "timeout", "other", "score")


@dataclass
class Row:
    """One line of the score table."""

    module: str
    counts: dict[str, int] = field(default_factory=dict)
    survivors: list[str] = field(default_factory=list)

    def add(self, column: str, name: str) -> None:
        self.counts[column] = self.counts.get(column, 0) + 1
        if column in ("survived", "no tests"):
            self.survivors.append(name)

    @property
    def mutants(self) -> int:
        return sum(self.counts.values())

    @property
    def score(self) -> float | None:
        n = self.mutants
        caught = self.counts.get("killed", 0) + self.counts.get("timeout", 0)
        return None if n == 0 else 100.0 * caught / n

    def cells(self) -> list[str]:
        known = ("killed", "survived", "no tests", "timeout")
        other = sum(v for k, v in self.counts.items() if k not in known)
        score = self.score
        return [
            self.module,
            str(self.mutants),
            *(str(self.counts.get(k, 0)) for k in known),
            str(other),
            "-" if score is None else f"{score:.0f}%",
        ]


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table (it reads as plain text too)."""
    header = ["module", *COLUMNS]
    lines = [header, *(r.cells() for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def fmt(cells: Sequence[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines[1:])])


def in_sample(name: str, fraction: float, seed: int) -> bool:
    """Deterministic membership: stable for a mutant whatever else changes in the file."""
    if fraction >= 1.0:
        return True
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def select_targets(names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Group name or file (``checks/coverage.py``, ``cadence``) -> {group: files}."""
    if not names:
        return {g.name: g.files for g in GROUPS.values()}
    chosen: dict[str, list[str]] = {}
    for raw in names:
        if raw in GROUPS:
            chosen[raw] = list(GROUPS[raw].files)
            continue
        wanted = raw.removeprefix("daemon/").removeprefix("migration_watch/")
        wanted = wanted if wanted.endswith(".py") else wanted.replace(".", "/") + ".py"
        owners = [g for g in GROUPS.values() if wanted in g.files]
        if not owners:
            known = ", ".join(GROUPS)
            raise SystemExit(
                f"mutation: {raw!r} is neither a group ({known}) nor one of their files"
            )
        files = chosen.setdefault(owners[0].name, [])
        if wanted not in files:
            files.append(wanted)
    return {g: tuple(f) for g, f in chosen.items()}


def _toml_list(values: Iterable[str]) -> str:
    return json.dumps(list(values))  # a JSON list of strings is a TOML array


def mutmut_config(group: Group, files: Sequence[str]) -> str:
    return "\n".join(
        [
            "",
            "[tool.mutmut]",
            'source_paths = ["src/migration_watch"]',
            f"only_mutate = {_toml_list(f'src/migration_watch/{f}' for f in files)}",
            f"pytest_add_cli_args_test_selection = {_toml_list(group.tests)}",
            'pytest_add_cli_args = ["-p", "no:cacheprovider"]',
            f"also_copy = {_toml_list(p for p in EXTRA_PATHS if (ROOT / p).exists())}",
            "use_git_change_detection = false",
            "",
        ]
    )


def stage(group: Group, files: Sequence[str], stage_dir: Path) -> None:
    """A fresh copy of what mutmut needs, in the layout it understands."""
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(PACKAGE, stage_dir / "src" / "migration_watch", ignore=ignore)
    shutil.copytree(ROOT / "tests", stage_dir / "tests", ignore=ignore)
    for extra in EXTRA_PATHS:
        source = ROOT / extra
        if source.is_dir():
            shutil.copytree(source, stage_dir / extra, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, stage_dir / extra)
    text = (ROOT / "pyproject.toml").read_text()
    if "[tool.mutmut]" in text:
        raise SystemExit(
            "mutation: pyproject.toml has its own [tool.mutmut]: this driver writes one"
        )
    (stage_dir / "pyproject.toml").write_text(text + mutmut_config(group, files))


_GENERATE = """
import mutmut.__main__ as m
m.makedirs("mutants", exist_ok=True)
m.copy_src_dir()
m.copy_also_copy_files()
m.setup_source_paths()
m.create_mutants(1)
"""


def _meta_files(stage_dir: Path, files: Sequence[str]) -> dict[str, Path]:
    base = stage_dir / "mutants" / "src" / "migration_watch"
    return {f: base / f"{f}.meta" for f in files}


def _exit_codes(meta: Path) -> dict[str, int | None]:
    if not meta.exists():
        return {}
    data: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    return data


def generate(stage_dir: Path, files: Sequence[str], env: dict[str, str]) -> dict[str, list[str]]:
    """Let mutmut write the mutants; the mutant names per file."""
    subprocess.run(
        [sys.executable, "-c", _GENERATE],
        cwd=stage_dir,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return {f: sorted(_exit_codes(meta)) for f, meta in _meta_files(stage_dir, files).items()}


def _stop_leftover_clusters(tmp: Path) -> None:
    """A mutant killed on its CPU limit cannot stop the PostgreSQL cluster its tests started."""
    for pid_file in tmp.glob("mw-pg-*/data/postmaster.pid"):
        data = pid_file.parent
        pg_ctl = shutil.which("pg_ctl") or next(
            iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)), None
        )
        if pg_ctl is None:
            print(f"mutation: a cluster is left running in {data}", file=sys.stderr)
            continue
        argv = [str(pg_ctl), "-D", str(data), "stop", "-m", "immediate"]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=False, capture_output=True)


def run_group(
    group: Group,
    files: Sequence[str],
    *,
    fraction: float,
    seed: int,
    jobs: int,
    only: Sequence[str] = (),
) -> tuple[list[Row], float]:
    stage_dir = STAGE_ROOT / group.name
    stage(group, files, stage_dir)
    tmp = Path(tempfile.mkdtemp(prefix="mw-mutation-"))
    tmp.chmod(0o755)  # the postgres system user creates the tests' clusters in it
    env = dict(os.environ)
    env["PYTHONPATH"] = str(stage_dir / "mutants" / "src")
    env["TMPDIR"] = str(tmp)
    env.pop("MUTANT_UNDER_TEST", None)
    started = time.monotonic()
    try:
        names = generate(stage_dir, files, env)
        chosen = {
            f: [
                n
                for n in ns
                if in_sample(n, fraction, seed) and (not only or any(fnmatch(n, p) for p in only))
            ]
            for f, ns in names.items()
        }
        selected = [n for ns in chosen.values() for n in ns]
        total = sum(len(ns) for ns in names.values())
        print(
            f"== {group.name}: {len(selected)} of {total} mutants"
            f" ({', '.join(files)}; tests: {' '.join(group.tests)})",
            flush=True,
        )
        if selected:
            argv = [
                str(Path(sys.executable).with_name("mutmut")),
                "run",
                "--max-children",
                str(jobs),
            ]
            # Without names mutmut runs every mutant; with them, exactly those.
            argv += selected if fraction < 1.0 or only else []
            log = stage_dir / "mutmut.log"
            with log.open("w") as out:
                code = subprocess.run(
                    argv, cwd=stage_dir, env=env, check=False, stdout=out, stderr=subprocess.STDOUT
                ).returncode
            if code != 0:
                tail = log.read_text(errors="replace").replace("\r", "\n").splitlines()[-30:]
                print("\n".join(tail), file=sys.stderr)
                raise SystemExit(f"mutation: mutmut failed for {group.name} (exit {code}, {log})")
    finally:
        _stop_leftover_clusters(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - started
    rows = []
    for f, meta in _meta_files(stage_dir, files).items():
        codes = _exit_codes(meta)
        row = Row(f)
        for name in chosen[f]:
            row.add(_COLUMN_BY_EXIT_CODE.get(codes.get(name), "other"), name)
        rows.append(row)
    if len(rows) > 1:
        overall = Row(f"{group.name} (all)")
        for row in rows:
            for column, n in row.counts.items():
                overall.counts[column] = overall.counts.get(column, 0) + n
        rows.append(overall)
    return rows, elapsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("targets", nargs="*", help=f"groups ({', '.join(GROUPS)}) or their files")
    parser.add_argument("--sample", type=float, default=1.0, help="fraction of the mutants (0..1]")
    parser.add_argument("--seed", type=int, default=17, help="seed of the sample")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="GLOB",
        help="only the mutants whose name matches (repeatable), e.g. '*x_plan__mutmut_6'",
    )
    parser.add_argument("--jobs", type=int, default=1, help="mutants run in parallel (default 1)")
    parser.add_argument("--sql", action="store_true", help="also the SQL-text mutations")
    parser.add_argument("--sql-only", action="store_true", help="only the SQL-text mutations")
    parser.add_argument("--list", action="store_true", help="print the groups and their tests")
    parser.add_argument("--json", type=Path, help="also write the table and survivors as JSON")
    args = parser.parse_args(argv)
    if not 0.0 < args.sample <= 1.0:
        parser.error("--sample must be in (0, 1]")
    if args.list:
        for g in GROUPS.values():
            print(f"{g.name}: {' '.join(g.files)}\n    tests: {' '.join(g.tests)}")
        return 0
    targets = select_targets(args.targets)
    rows: list[Row] = []
    timings: dict[str, float] = {}
    if not args.sql_only:
        for name, files in targets.items():
            group_rows, elapsed = run_group(
                GROUPS[name],
                files,
                fraction=args.sample,
                seed=args.seed,
                jobs=args.jobs,
                only=args.only,
            )
            rows += group_rows
            timings[name] = elapsed
    if args.sql or args.sql_only:
        import sql_mutation  # bench/ is sys.path[0] when run as a script

        for name, files in targets.items():
            sql_files = [f for f in files if f in sql_mutation.SQL_FILES]
            if not sql_files:
                continue
            started = time.monotonic()
            for f in sql_files:
                outcomes = sql_mutation.run_file(f, fraction=args.sample, seed=args.seed)
                row = Row(f"{f} (SQL)")
                for o in outcomes:
                    row.add(o.status, o.label)
                rows.append(row)
            timings[f"{name} (SQL)"] = time.monotonic() - started
    print()
    print(f"sample {args.sample:g} (seed {args.seed})" if args.sample < 1.0 else "all mutants")
    print(format_table(rows))
    print()
    for label, seconds in timings.items():
        print(f"{label}: {seconds / 60:.1f} min")
    for row in rows:
        for name in row.survivors:
            print(f"survived: {name}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "sample": args.sample,
                    "seed": args.seed,
                    "rows": [
                        {"module": r.module, **r.counts, "score": r.score, "survivors": r.survivors}
                        for r in rows
                    ],
                    "seconds": timings,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
