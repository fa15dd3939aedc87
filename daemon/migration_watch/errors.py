"""The exceptions migration-watch raises, in one place.

    MigrationWatchError          base of everything below
    ├── ConfigError              bad configuration or usage (exit 2); carries every problem
    ├── StateError               the state file is corrupt, newer or unusable (exit 2)
    └── DatabaseError            something could not be measured (exit 3)
                                 ``fatal`` tells the caller whether retrying can help

Messages never contain secrets: DSNs are redacted before they are put in an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "ConfigProblem",
    "DatabaseError",
    "MigrationWatchError",
    "StateError",
]


class MigrationWatchError(Exception):
    """Base class of migration-watch's own errors."""

    exit_code = 1


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in a configuration: where (``migration.tables[2].name``) and what."""

    location: str
    error: str

    def __str__(self) -> str:
        return f"{self.location}: {self.error}" if self.location else self.error


class ConfigError(MigrationWatchError):
    """Invalid configuration or command-line usage. Lists every problem found."""

    exit_code = 2

    def __init__(self, problems: Sequence[ConfigProblem] | str, *, source: str | None = None):
        if isinstance(problems, str):
            problems = [ConfigProblem("", problems)]
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + str(p) for p in self.problems))


class StateError(MigrationWatchError):
    """The state store cannot be used (corrupt, written by a newer version, unwritable)."""

    exit_code = 2


class DatabaseError(MigrationWatchError):
    """The database could not answer: unreachable, timeout, permission denied.

    ``fatal`` is True when retrying cannot help (e.g. permission denied, bad credentials).
    """

    exit_code = 3

    def __init__(self, message: str, *, fatal: bool = False, kind: str = "error"):
        super().__init__(message)
        self.fatal = fatal
        self.kind = kind
