"""One daemon per state file: an exclusive ``flock`` next to it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from migration_watch.errors import StateError

__all__ = ["DaemonLock"]


class DaemonLock:
    """One daemon per state file: an exclusive ``flock`` on ``<state path>.lock``.

    Two daemons on one state file would run the cadence twice and count every log line
    twice. The kernel drops the lock when the process ends, SIGKILL included, so a stale lock
    file never blocks a restart. The file holds the owner's pid (for the error message).
    CLI commands that only read or write the store (``schedule``, ``report``,
    ``mark-deployed``…) do not take it.
    """

    def __init__(self, state_path: str | Path) -> None:
        self.state_path = Path(state_path)
        self.path = self.state_path.with_name(self.state_path.name + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StateError` (exit 2) naming the holder's pid."""
        if self._fd is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(
                f"{self.path}: cannot create the daemon lock file: {exc.strerror or exc}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateError(
                f"{self.state_path}: another migration-watch daemon (pid {holder}) is using "
                "this state file; stop it first, or give this one its own state.path"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent). The file stays: removing it would race a starter."""
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
