"""SQL-text mutation testing: one change at a time to the SQL the checks and the baseline send.

mutmut does not mutate inside string literals, and the counting of the check suite is mostly
SQL: a ``>=`` turned into ``>`` in ``count(*) FILTER (WHERE created >= %(deployed)s)`` is a
wrong number on the post-deploy check, invisible to every Python mutation. This runner finds
the SQL text of a module (the string literals given to ``sql.SQL(...)`` or to ``.execute(...)``)
and applies one of these mutations at a time:

* comparison operators: ``>=`` -> ``>``, ``>`` -> ``>=``, ``<=`` -> ``<``, ``<`` -> ``<=``,
  ``=`` -> ``<>``, ``<>`` / ``!=`` -> ``=``;
* ``IS NULL`` <-> ``IS NOT NULL``;
* ``AND`` <-> ``OR``;
* dropping a ``FILTER (WHERE ...)`` clause (the aggregate then counts every row);
* dropping either conjunct of an ``AND`` (within one literal piece);
* ``count(*)`` -> ``count(col)`` for the columns tested for NULL or compared in the same
  statement (``count(col)`` skips the NULLs the check is about).

A literal line ending in ``# pragma: no mutate, <reason>`` gets no mutant (an equivalent one).

Each mutant is written into a staged copy of the package (``.mutation/sql/src``: the working
tree is never written to, and the staged file is restored in a ``finally``), and the module's
tests run against it (``pytest -x -p no:cacheprovider``, the integration tests with their own
throw-away PostgreSQL). Exit status 0 is a survivor.

    nice .venv/bin/python bench/sql_mutation.py checks/coverage.py            # run
    nice .venv/bin/python bench/sql_mutation.py checks/coverage.py --list     # mutants only

``scripts/mutation --sql`` runs it for the files of the groups it is given, with their tests.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tokenize
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "daemon" / "migration_watch"
STAGE = ROOT / ".mutation" / "sql"

# The modules whose SQL counts or judges (relative to migration_watch/).
_CHECKS = ("tests/integration/test_checks.py", "tests/integration/test_least_privilege.py")
# The tests that should catch a wrong SQL text in each module.
TESTS = {
    "baseline.py": (
        "tests/integration/test_latency.py",
        "tests/integration/test_cli_and_service.py"
        "::test_baseline_record_then_latency_checks_in_check_once",
    ),
    "checks/__init__.py": _CHECKS,
    "checks/catalog.py": _CHECKS,
    "checks/coverage.py": _CHECKS,
    "checks/latency.py": ("tests/integration/test_latency.py",),
    "checks/query_ratio.py": ("tests/integration/test_query_ratio.py",),
    "checks/rls.py": _CHECKS,
    "checks/schema.py": _CHECKS,
}
SQL_FILES = tuple(TESTS)


@dataclass(frozen=True)
class Mutant:
    """One change to one SQL literal piece of ``path`` (offsets into the file's text)."""

    path: str
    line: int
    start: int
    end: int
    replacement: str
    operator: str
    original: str

    @property
    def label(self) -> str:
        return f"{self.path}:{self.line} {self.operator} in {self.original!r}"

    def apply(self, source: str) -> str:
        return source[: self.start] + self.replacement + source[self.end :]


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    status: str  # killed | survived | timeout | error
    seconds: float

    @property
    def label(self) -> str:
        return self.mutant.label


# -- where the SQL is ------------------------------------------------------------------------


def _is_sql_call(node: ast.Call) -> bool:
    f = node.func
    name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
    return name in ("SQL", "execute")


def _offsets(source: str) -> list[int]:
    """Character offset of the start of each line (1-based line -> index line - 1)."""
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    return starts


def sql_string_pieces(source: str) -> Iterator[tuple[int, int, int]]:
    """(line, start, end) of the body (between the quotes) of each string token of the SQL."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    starts = _offsets(source)

    def char_offset(lineno: int, col_bytes: int) -> int:
        text = lines[lineno - 1].encode()[:col_bytes].decode()
        return starts[lineno - 1] + len(text)

    spans: list[tuple[int, int]] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and _is_sql_call(node) and node.args):
            continue
        for sub in ast.walk(node.args[0]):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                assert sub.end_lineno is not None and sub.end_col_offset is not None
                spans.append(
                    (
                        char_offset(sub.lineno, sub.col_offset),
                        char_offset(sub.end_lineno, sub.end_col_offset),
                    )
                )
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type != tokenize.STRING:
            continue
        start = starts[tok.start[0] - 1] + tok.start[1]
        end = starts[tok.end[0] - 1] + tok.end[1]
        if not any(a <= start and end <= b for a, b in spans):
            continue
        text = tok.string
        prefix = len(text) - len(text.lstrip("rRbBuUfF"))
        if "f" in text[:prefix].lower() or "b" in text[:prefix].lower():
            continue
        quote = 3 if text[prefix : prefix + 3] in ('"""', "'''") else 1
        yield tok.start[0], start + prefix + quote, end - quote


# A line carrying it gets no mutant (mutmut's marker, for the Python mutants of the same line).
PRAGMA = "# pragma: no mutate"

# -- the mutations ---------------------------------------------------------------------------

_COMPARISON = re.compile(r"(?<![<>=!:])(<>|!=|>=|<=|=|<|>)(?![<>=])")
_SWAP_COMPARISON = {">=": ">", ">": ">=", "<=": "<", "<": "<=", "=": "<>", "<>": "=", "!=": "="}
_IS_NULL = re.compile(r"\bIS (NOT )?NULL\b")
_AND_OR = re.compile(r"\b(AND|OR)\b")
_FILTER = re.compile(r"\s*FILTER\s*\(\s*WHERE\b")
_COUNT_STAR = re.compile(r"\bcount\(\*\)")
_TESTED_COLUMN = re.compile(
    r"(\{[A-Za-z_]\w*\}|\b[a-z_]\w*\.[a-z_]\w*\b)\s*(?:IS (?:NOT )?NULL\b|>=|<=|<>|!=|=|<|>)"
)
# Where a conjunct ends (at paren depth 0), looking right / left of its AND.
_RIGHT_STOP = re.compile(r"\s+(?:AND|OR|FROM|WHERE|GROUP|ORDER|LIMIT|AS|HAVING|THEN|ELSE|END)\b|,")
_LEFT_STOP = re.compile(r"(?:\b(?:AND|OR|WHERE|ON|WHEN|HAVING|SELECT)\s+|,\s*)$")


def _matching_paren(text: str, open_at: int) -> int | None:
    depth = 0
    for i in range(open_at, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return None


def _right_operand_end(body: str, start: int) -> int | None:
    depth = 0
    i = start
    while i < len(body):
        ch = body[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return i
            depth -= 1
        elif depth == 0 and _RIGHT_STOP.match(body, i):
            return i
        i += 1
    return len(body)


def _left_operand_start(body: str, end: int) -> int | None:
    depth = 0
    i = end
    while i > 0:
        ch = body[i - 1]
        if ch == ")":
            depth += 1
        elif ch == "(":
            if depth == 0:
                return i
            depth -= 1
        elif depth == 0 and _LEFT_STOP.search(body[:i]):
            return i
        i -= 1
    return 0


def mutations_of_piece(body: str, statement: str) -> Iterator[tuple[int, int, str, str]]:
    """(start, end, replacement, operator) within one literal piece's body."""
    for m in _COMPARISON.finditer(body):
        new = _SWAP_COMPARISON[m.group(1)]
        yield m.start(1), m.end(1), new, f"{m.group(1)} -> {new}"
    for m in _IS_NULL.finditer(body):
        new = "IS NULL" if m.group(1) else "IS NOT NULL"
        yield m.start(), m.end(), new, f"{m.group()} -> {new}"
    for m in _AND_OR.finditer(body):
        new = "OR" if m.group(1) == "AND" else "AND"
        yield m.start(), m.end(), new, f"{m.group(1)} -> {new}"
    for m in _FILTER.finditer(body):
        close = _matching_paren(body, body.index("(", m.start()))
        if close is not None:
            yield m.start(), close + 1, "", "drop FILTER (WHERE ...)"
    for m in re.finditer(r"\s+AND\s+", body):
        if "BETWEEN" in body[: m.start()].rsplit("AND", 1)[-1]:
            continue
        right_end = _right_operand_end(body, m.end())
        if right_end is not None and body[m.end() : right_end].strip():
            yield m.start(), right_end, "", "drop the right conjunct of AND"
        left_start = _left_operand_start(body, m.start())
        if left_start is not None and body[left_start : m.start()].strip():
            yield left_start, m.end(), "", "drop the left conjunct of AND"
    columns: list[str] = []
    for m in _TESTED_COLUMN.finditer(statement):
        if m.group(1) not in columns:
            columns.append(m.group(1))
    for m in _COUNT_STAR.finditer(body):
        for col in columns[:2]:
            yield m.start(), m.end(), f"count({col})", f"count(*) -> count({col})"


def _context(body: str, start: int, end: int, width: int = 28) -> str:
    """The piece around the change, trimmed to ``width`` characters each side."""
    left = max(0, start - width)
    right = min(len(body), end + width)
    text = body[left:right].strip()
    return ("..." if left > 0 else "") + text + ("..." if right < len(body) else "")


def find_mutants(path: str, source: str) -> list[Mutant]:
    pieces = list(sql_string_pieces(source))
    # The "statement" of a piece, for count(col): the pieces of the same literal, i.e. the
    # adjacent ones (an implicit concatenation has only whitespace between its tokens).
    groups: list[list[tuple[int, int, int]]] = []
    for piece in pieces:
        if groups and not source[groups[-1][-1][2] + 1 : piece[1] - 1].strip():
            groups[-1].append(piece)
        else:
            groups.append([piece])
    lines = source.splitlines()
    out: list[Mutant] = []
    for group in groups:
        statement = " ".join(source[s:e] for _, s, e in group)
        for line, s, e in group:
            body = source[s:e]
            for a, b, new, op in mutations_of_piece(body, statement):
                at = line + body[:a].count("\n")
                if PRAGMA in lines[at - 1]:
                    continue
                out.append(Mutant(path, at, s + a, s + b, new, op, _context(body, a, b)))
    return out


# -- running ---------------------------------------------------------------------------------


def in_sample(label: str, fraction: float, seed: int) -> bool:
    if fraction >= 1.0:
        return True
    digest = hashlib.sha256(f"{seed}:{label}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


def _stage() -> Path:
    if STAGE.exists():
        shutil.rmtree(STAGE)
    target = STAGE / "src" / "migration_watch"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def _stop_leftover_clusters(tmp: Path) -> None:
    pg_ctl = shutil.which("pg_ctl") or next(
        iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), reverse=True)), None
    )
    for pid_file in tmp.glob("mw-pg-*/data/postmaster.pid"):
        if pg_ctl is None:
            print(f"sql_mutation: a cluster is left running in {pid_file.parent}", file=sys.stderr)
            continue
        argv = [str(pg_ctl), "-D", str(pid_file.parent), "stop", "-m", "immediate"]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=False, capture_output=True)


def _pytest(tests: Sequence[str], env: dict[str, str], timeout: float) -> tuple[str, float]:
    argv = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return "timeout", time.monotonic() - started
    status = {0: "survived", 1: "killed"}.get(code, "error")
    return status, time.monotonic() - started


def tests_for(path: str) -> tuple[str, ...]:
    return TESTS[path]


def run_file(
    path: str,
    tests: Sequence[str] | None = None,
    *,
    fraction: float = 1.0,
    seed: int = 17,
    match: str | None = None,
    verbose: bool = True,
) -> list[Outcome]:
    """Every (sampled) SQL mutant of ``path`` against ``tests``; the working tree is not touched."""
    tests = tuple(tests or tests_for(path))
    staged_package = _stage()
    staged = staged_package / path
    original = staged.read_text()
    mutants = [
        m
        for m in find_mutants(path, original)
        if in_sample(m.label, fraction, seed) and (match is None or match in m.label)
    ]
    tmp = Path(tempfile.mkdtemp(prefix="mw-sqlmut-"))
    tmp.chmod(0o755)  # the postgres system user creates the tests' clusters in it
    env = dict(os.environ)
    env.update(PYTHONPATH=str(staged_package.parent), TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1")
    outcomes: list[Outcome] = []
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import migration_watch; print(migration_watch.__file__)"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        if not probe.stdout.strip().startswith(str(staged_package)):
            raise SystemExit(f"sql_mutation: the tests would import {probe.stdout.strip()}")
        status, clean = _pytest(tests, env, timeout=1800)
        if status != "survived":
            raise SystemExit(f"sql_mutation: the tests fail without a mutant ({' '.join(tests)})")
        if verbose:
            print(f"== {path} (SQL): {len(mutants)} mutants, clean run {clean:.0f} s", flush=True)
        for i, mutant in enumerate(mutants, 1):
            try:
                staged.write_text(mutant.apply(original))
                status, seconds = _pytest(tests, env, timeout=max(120.0, 3 * clean))
            finally:
                staged.write_text(original)
            outcomes.append(Outcome(mutant, status, seconds))
            if verbose:
                print(
                    f"  [{i}/{len(mutants)}] {status:8} {seconds:5.1f} s  {mutant.label}",
                    flush=True,
                )
    finally:
        _stop_leftover_clusters(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "files", nargs="*", default=list(SQL_FILES), help="relative to migration_watch/"
    )
    parser.add_argument("--tests", nargs="+", help="tests to run (default: the module's)")
    parser.add_argument("--sample", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--match", help="only the mutants whose label contains this text")
    parser.add_argument("--list", action="store_true", help="print the mutants, run nothing")
    args = parser.parse_args(argv)
    survivors: list[str] = []
    for path in args.files:
        if args.list:
            for m in find_mutants(path, (PACKAGE / path).read_text()):
                if in_sample(m.label, args.sample, args.seed) and (
                    args.match is None or args.match in m.label
                ):
                    print(m.label, "=>", repr(m.replacement))
            continue
        outcomes = run_file(
            path, args.tests, fraction=args.sample, seed=args.seed, match=args.match
        )
        killed = sum(o.status in ("killed", "timeout") for o in outcomes)
        print(f"{path}: {killed} of {len(outcomes)} killed")
        survivors += [o.label for o in outcomes if o.status == "survived"]
    for label in survivors:
        print(f"survived: {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
