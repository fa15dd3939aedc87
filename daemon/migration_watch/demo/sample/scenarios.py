"""Whole scenarios: :func:`build_scenario` (``pre_migration``, ``healthy``, ``anomalies``)
and :func:`apply_anomalies` (the documented anomalies, see ``ANOMALY_TRUTH``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog

from .anomalies import (
    add_missing_without_legacy,
    add_orphans,
    add_post_deploy_rows,
    drop_index,
    drop_optional_table,
    invalidate_index,
    legacy_policy,
)
from .catalog import Conn
from .facts import ANOMALIES, DEPLOYED_AT, SCENARIOS
from .populate import populate, vacuum_analyze
from .schema import apply_migration, install_extensions, load_schema
from .truth import Truth, truth

__all__ = [
    "apply_anomalies",
    "build_scenario",
]

log = structlog.get_logger(__name__)


def build_scenario(
    conn: Conn,
    name: str,
    *,
    deployed_at: datetime = DEPLOYED_AT,
    extensions: bool = True,
    **populate_args: Any,
) -> Truth:
    """Build a scenario in an empty database and return its truth.

    ``pre_migration``: schema + data (customer_id only). ``healthy``: then the migration
    (backfill via domain / owner membership). ``anomalies``: then ``apply_anomalies``.
    ``extensions``: install pg_stat_statements first. ``populate_args`` go to ``populate``.
    """
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; expected one of {SCENARIOS}")
    if extensions:
        install_extensions(conn)
    load_schema(conn)
    populate(conn, deployed_at=deployed_at, vacuum=False, **populate_args)
    if name != "pre_migration":
        apply_migration(conn)
    if name == "anomalies":
        return apply_anomalies(conn, deployed_at=deployed_at)
    vacuum_analyze(conn)
    return truth(conn, deployed_at=deployed_at)


def apply_anomalies(conn: Conn, *, deployed_at: datetime = DEPLOYED_AT) -> Truth:
    """Turn a healthy database into the ``anomalies`` scenario; returns its truth.

    In this order: conversations get 5 rows missing both columns, 7 orphans (a day before
    deploy) and 4 post-deploy orphans (at ``deployed_at`` + 0..3 s); customer_configs get 1
    row missing both and 2 orphans; ``idx_conversations_organization_id`` is marked invalid
    (still ready); ``idx_customer_configs_organization_id`` is dropped; conversations gains a
    legacy policy next to the new one; customer_configs' new policy is replaced by a legacy
    one; ``scraper_configs`` is dropped. On the default data the result is ``ANOMALY_TRUTH``.
    """
    before = deployed_at - timedelta(days=1)
    conv = ANOMALIES["conversations"]
    cfg = ANOMALIES["customer_configs"]
    add_missing_without_legacy(conn, "conversations", conv["missing_without_legacy"],
                               created_at=before)  # fmt: skip
    add_orphans(conn, "conversations", conv["orphans"], created_at=before)
    add_post_deploy_rows(conn, conv["post_deploy_orphans"], deployed_at)
    add_missing_without_legacy(conn, "customer_configs", cfg["missing_without_legacy"],
                               created_at=before)  # fmt: skip
    add_orphans(conn, "customer_configs", cfg["orphans"], created_at=before)
    invalidate_index(conn, "idx_conversations_organization_id")
    drop_index(conn, "idx_customer_configs_organization_id")
    legacy_policy(conn, "conversations")
    legacy_policy(conn, "customer_configs", replace=True)
    drop_optional_table(conn, "scraper_configs")
    vacuum_analyze(conn)
    log.debug("sample_anomalies_applied")
    return truth(conn, deployed_at=deployed_at)
