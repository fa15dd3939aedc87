"""A throw-away PostgreSQL cluster: initdb into a temp dir, random port, torn down on stop.

Used by the test suite and by ``migration-watch demo``; it does not depend on pytest.

    with EphemeralCluster() as cluster:
        cluster.create_database("app")
        psycopg.connect(cluster.dsn("app"))

Authentication: the ``postgres`` superuser needs no password (trust on the unix socket and on
127.0.0.1); every other role authenticates with scram-sha-256 over TCP, so tests can create a
least-privilege role with a password and see a wrong password rejected.

initdb refuses to run as root: when the effective uid is 0, initdb and pg_ctl run as the
``postgres`` system user (``runuser -u postgres --``) on a temp dir that user owns.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import make_conninfo

__all__ = ["ClusterError", "EphemeralCluster", "find_bin_dir"]

log = structlog.get_logger(__name__)

_SUPERUSER = "postgres"
_SYSTEM_USER = "postgres"
_REQUIRED_BINARIES = ("initdb", "pg_ctl")
_START_TIMEOUT_S = 30
_STOP_TIMEOUT_S = 10
_LOG_TAIL_LINES = 30

_HBA = """\
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       all                      trust
host    all       postgres  127.0.0.1/32   trust
host    all       all       127.0.0.1/32   scram-sha-256
"""


class ClusterError(RuntimeError):
    """The ephemeral cluster could not be created, started or stopped (message says why)."""


def find_bin_dir(explicit: Path | None = None) -> Path:
    """Directory holding ``initdb`` and ``pg_ctl``.

    Order: ``explicit``; ``$MIGRATION_WATCH_PG_BINDIR``; ``pg_config --bindir``; the highest
    ``/usr/lib/postgresql/<version>/bin``; ``initdb`` found on ``PATH``.
    """
    candidates: list[Path] = []
    if explicit is not None:
        if not _has_binaries(explicit):
            raise ClusterError(f"{explicit} does not contain {' and '.join(_REQUIRED_BINARIES)}")
        return explicit
    env_dir = os.environ.get("MIGRATION_WATCH_PG_BINDIR")
    if env_dir:
        candidates.append(Path(env_dir))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    candidates.extend(
        Path(p)
        for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for candidate in candidates:
        if _has_binaries(candidate):
            return candidate
    raise ClusterError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: looked in "
        "$MIGRATION_WATCH_PG_BINDIR, `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH. "
        "Install them (Debian/Ubuntu: apt-get install postgresql postgresql-contrib) "
        "or pass bin_dir."
    )


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"/postgresql/([0-9.]+)/bin$", path)
    if not match:
        return (0,)
    return tuple(int(part) for part in match.group(1).split(".") if part)


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in _REQUIRED_BINARIES)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EphemeralCluster:
    """A PostgreSQL cluster in a temp dir, listening on 127.0.0.1 only. A context manager.

    ``start()`` runs initdb and starts the server; ``stop()`` shuts it down (fast, then
    immediate) and removes the directory. ``stop_server()`` / ``start_server()`` /
    ``restart()`` stop and start the server keeping the data and the port.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        port: int | None = None,
        bin_dir: Path | None = None,
        shared_preload: bool = True,
    ) -> None:
        self._base_dir = base_dir
        self._requested_port = port
        self._bin_dir_arg = bin_dir
        self._bin_dir: Path | None = None
        self._shared_preload = shared_preload
        self._port: int | None = port
        self._dir: Path | None = None
        self._running = False
        self._as_system_user = os.geteuid() == 0

    # -- public surface ------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (fixed for the cluster's whole life)."""
        if self._port is None:
            raise ClusterError("cluster not started")
        return self._port

    @property
    def bin_dir(self) -> Path:
        """The directory of the PostgreSQL binaries in use."""
        if self._bin_dir is None:
            self._bin_dir = find_bin_dir(self._bin_dir_arg)
        return self._bin_dir

    @property
    def directory(self) -> Path:
        """The temp dir holding ``data/``, ``sock/`` and ``postgresql.log``."""
        if self._dir is None:
            raise ClusterError("cluster not started")
        return self._dir

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def socket_dir(self) -> Path:
        return self.directory / "sock"

    @property
    def log_file(self) -> Path:
        return self.directory / "postgresql.log"

    @property
    def running(self) -> bool:
        """True between a successful ``start_server()`` and the next ``stop_server()``."""
        return self._running

    def dsn(
        self,
        dbname: str = "postgres",
        *,
        user: str = _SUPERUSER,
        password: str | None = None,
        **extra: str | int,
    ) -> str:
        """A libpq conninfo string for ``dbname`` over TCP on 127.0.0.1.

        Default user ``postgres`` (superuser, no password). Extra keywords are added as is
        (e.g. ``connect_timeout=2``, ``application_name="x"``).
        """
        params: dict[str, str | int] = {
            "host": "127.0.0.1",
            "port": self.port,
            "user": user,
            "dbname": dbname,
        }
        if password is not None:
            params["password"] = password
        params.update(extra)
        return make_conninfo("", **params)

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit superuser connection to ``dbname`` (caller closes it)."""
        return psycopg.connect(self.dsn(dbname, connect_timeout=10), autocommit=True)

    def create_database(self, name: str, template: str | None = None) -> None:
        """``CREATE DATABASE name [TEMPLATE template]``; nobody may be connected to template."""
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with self.connect() as conn:
            conn.execute(query)
        log.debug("pg_database_created", database=name, template=template)

    def drop_database(self, name: str) -> None:
        """``DROP DATABASE IF EXISTS name WITH (FORCE)`` (terminates its connections)."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
        log.debug("pg_database_dropped", database=name)

    def start(self) -> Self:
        """initdb a new cluster in a temp dir and start it; returns self."""
        if self._dir is not None:
            raise ClusterError("cluster already started")
        began = time.monotonic()
        bin_dir = self.bin_dir
        owner = self._system_user() if self._as_system_user else None
        parent = self._base_dir if self._base_dir is not None else Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix="mw-pg-", dir=parent))
        atexit.register(self._atexit)
        try:
            os.chmod(self._dir, 0o700)
            if owner is not None:
                _check_traversable(self._dir.parent, owner)
                os.chown(self._dir, owner.pw_uid, owner.pw_gid)
            self._run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    _SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                what="initdb",
                timeout=120,
            )
            self._as_owner_mkdir(self.socket_dir)
            self._write_config()
            attempts = 1 if self._requested_port is not None else 3
            for attempt in range(1, attempts + 1):
                if self._requested_port is None:
                    self._port = _free_port()
                self._write_port()
                try:
                    self.start_server()
                    break
                except ClusterError:
                    if attempt == attempts or "could not bind" not in self._log_tail():
                        raise
                    log.debug("pg_port_taken_retrying", port=self._port)
        except BaseException:
            self.stop()
            raise
        log.info(
            "pg_cluster_started",
            port=self._port,
            directory=str(self._dir),
            seconds=round(time.monotonic() - began, 3),
        )
        return self

    def start_server(self) -> None:
        """Start the server on the existing data dir and port; waits until it accepts queries."""
        if self._dir is None:
            raise ClusterError("cluster not initialised: call start()")
        if self._running:
            return
        try:
            self._pg_ctl("start", "-w", "-t", str(_START_TIMEOUT_S), "-l", str(self.log_file))
        except ClusterError as exc:
            raise ClusterError(
                f"{exc}\n--- {self.log_file} (tail) ---\n{self._log_tail()}"
            ) from exc
        self._running = True

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server, keeping the data dir (``mode``: smart | fast | immediate)."""
        if self._dir is None or not (self.data_dir / "postmaster.pid").exists():
            self._running = False
            return
        try:
            self._pg_ctl("stop", "-m", mode, "-w", "-t", str(_STOP_TIMEOUT_S))
        except ClusterError:
            if mode == "immediate":
                self._kill_postmaster()
            else:
                log.warning("pg_stop_retry_immediate", mode=mode)
                try:
                    self._pg_ctl("stop", "-m", "immediate", "-w", "-t", str(_STOP_TIMEOUT_S))
                except ClusterError:
                    self._kill_postmaster()
        self._running = False

    def restart(self) -> None:
        """Stop (fast) and start again: same data, same port."""
        self.stop_server()
        self.start_server()

    def stop(self) -> None:
        """Shut the server down (fast, then immediate) and remove the temp dir. Idempotent."""
        directory = self._dir
        if directory is None:
            return
        try:
            self.stop_server()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
            self._dir = None
            self._running = False
            atexit.unregister(self._atexit)
            log.info("pg_cluster_stopped", directory=str(directory))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------------

    def _atexit(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()

    def _system_user(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(_SYSTEM_USER)
        except KeyError:
            raise ClusterError(
                "initdb refuses to run as root and there is no 'postgres' system user to run "
                "it as; create one (useradd --system postgres) or run as a non-root user"
            ) from None

    def _command(self, argv: Sequence[str]) -> list[str]:
        if self._as_system_user:
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            return [runuser, "-u", _SYSTEM_USER, "--", *argv]
        return list(argv)

    def _run(self, argv: Sequence[str], *, what: str, timeout: float) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            proc = subprocess.run(
                self._command(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self._dir,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{what} timed out after {timeout:g}s") from exc
        except OSError as exc:
            raise ClusterError(f"{what} could not be run: {exc}") from exc
        if proc.returncode != 0:
            output = (proc.stdout + proc.stderr).strip()
            raise ClusterError(f"{what} failed (exit {proc.returncode}): {output}")
        return proc.stdout

    def _pg_ctl(self, action: str, *args: str) -> str:
        argv = [str(self.bin_dir / "pg_ctl"), action, "-D", str(self.data_dir), *args]
        return self._run(argv, what=f"pg_ctl {action}", timeout=_START_TIMEOUT_S + 15)

    def _as_owner_mkdir(self, path: Path) -> None:
        path.mkdir(mode=0o700)
        if self._as_system_user:
            owner = self._system_user()
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def _write_config(self) -> None:
        settings: dict[str, str] = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": _quote(str(self.socket_dir)),
            "max_connections": "100",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "wal_level": "minimal",
            "max_wal_senders": "0",
            "max_wal_size": "2GB",
            "maintenance_work_mem": "'256MB'",
            "checkpoint_timeout": "30min",
            "jit": "off",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
            "lc_messages": "'C'",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
            "log_min_messages": "warning",
            "log_connections": "off",
            "log_disconnections": "off",
        }
        if self._shared_preload:
            settings["shared_preload_libraries"] = "'pg_stat_statements'"
            settings["pg_stat_statements.track"] = "all"
            settings["pg_stat_statements.max"] = "10000"
        conf = "".join(f"{key} = {value}\n" for key, value in settings.items())
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as fh:
            fh.write("\n# --- migration-watch ephemeral cluster ---\n" + conf)
        (self.data_dir / "pg_hba.conf").write_text(_HBA, encoding="utf-8")

    def _write_port(self) -> None:
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as fh:
            fh.write(f"port = {self.port}\n")

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    def _kill_postmaster(self) -> None:
        """Last resort: SIGKILL the postmaster we started (pid from postmaster.pid)."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text(encoding="utf-8").splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        with contextlib.suppress(OSError):
            pid_file.unlink()


def _check_traversable(directory: Path, user: pwd.struct_passwd) -> None:
    """Raise ClusterError unless ``user`` can traverse every directory down to ``directory``."""
    groups = {g.gr_gid for g in grp.getgrall() if user.pw_name in g.gr_mem} | {user.pw_gid}
    for path in [directory, *directory.parents]:
        st = path.stat()
        if st.st_uid == user.pw_uid:
            allowed = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            allowed = bool(st.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(st.st_mode & stat.S_IXOTH)
        if not allowed:
            raise ClusterError(
                f"the {user.pw_name!r} user, which runs the server when migration-watch runs as "
                f"root, cannot traverse {path} (mode {stat.filemode(st.st_mode)}); choose a "
                "base_dir it can reach, e.g. under /tmp"
            )


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
