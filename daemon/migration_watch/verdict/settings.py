"""What the verdict expects and tolerates (:class:`VerdictSettings`), derived from the config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .model import CRITERIA, DEFAULT_REQUIRED

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["VerdictSettings"]


@dataclass(frozen=True)
class VerdictSettings:
    """Thresholds and expectations of the verdict.

    ``*_tables`` name the subjects (``schema.table``) each table criterion expects; an empty
    tuple means "whatever subjects the history holds". ``required`` criteria that end
    ``not_measured`` make the outcome ``not_measured``.
    """

    tables: tuple[str, ...] = ()
    index_tables: tuple[str, ...] = ()
    rls_tables: tuple[str, ...] = ()
    post_deploy_tables: tuple[str, ...] = ()
    required: frozenset[str] = DEFAULT_REQUIRED
    final_runs: int = 2
    latency_tolerance: float = 0.10
    max_final_legacy_ratio: float = 0.05
    error_budget_failed_runs: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.required) - set(CRITERIA)
        if unknown:
            raise ValueError(f"unknown criteria in required: {sorted(unknown)}")
        if self.final_runs < 1:
            raise ValueError("final_runs must be at least 1")
        if self.latency_tolerance < 0 or self.max_final_legacy_ratio < 0:
            raise ValueError("tolerances must not be negative")
        if self.error_budget_failed_runs < 0:
            raise ValueError("error_budget_failed_runs must not be negative")

    @classmethod
    def for_config(
        cls,
        config: Config,
        *,
        log_checks: bool = False,
        probes: bool = False,
        **overrides: Any,
    ) -> VerdictSettings:
        """Expectations derived from the config's tables and enabled checks.

        ``log_checks``: log sources are configured (``legacy_errors`` and ``error_budget``
        become required); ``probes``: probe queries are configured (``latency`` required).
        """
        c = config.checks
        tables = config.migration.tables
        index_tables = tuple(t.qualified for t in tables if t.indexes and c.schema_.enabled)
        rls_tables = tuple(t.qualified for t in tables if t.rls and c.rls.enabled)
        post_tables = tuple(
            t.qualified for t in tables if t.created_at and c.post_deploy_writes.enabled
        )
        required: set[str] = set()
        if c.coverage.enabled:
            required.add("coverage")
        if c.orphans.enabled:
            required.add("orphans")
        if index_tables:
            required.add("indexes")
        if rls_tables:
            required.add("rls")
        if c.schema_.enabled and c.schema_.require_legacy_column:
            required.add("legacy_column")
        if post_tables:
            required.add("post_deploy_writes")
        if log_checks:
            required |= {"legacy_errors", "error_budget"}
        if probes:
            required.add("latency")
        values: dict[str, Any] = {
            "tables": tuple(t.qualified for t in tables),
            "index_tables": index_tables,
            "rls_tables": rls_tables,
            "post_deploy_tables": post_tables,
            "required": frozenset(required),
        }
        values.update(overrides)
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return {
            "required": sorted(self.required),
            "final_runs": self.final_runs,
            "latency_tolerance": self.latency_tolerance,
            "max_final_legacy_ratio": self.max_final_legacy_ratio,
            "error_budget_failed_runs": self.error_budget_failed_runs,
        }
