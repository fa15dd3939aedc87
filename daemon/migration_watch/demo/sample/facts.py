"""The sample's fixed facts: names, the deploy time the data is laid out around, the
scenarios, and the numbers :func:`~.truth.truth` returns for the healthy and anomalous data."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "ANOMALIES",
    "ANOMALY_TRUTH",
    "DEPLOYED_AT",
    "EXPECTED_INDEXES",
    "HEALTHY_TRUTH",
    "LEGACY_COLUMN",
    "NEW_COLUMN",
    "OPTIONAL_TABLES",
    "SCENARIOS",
    "SCHEMA",
    "WATCHED_TABLES",
]

SCHEMA: Final = "public"
LEGACY_COLUMN: Final = "customer_id"
NEW_COLUMN: Final = "organization_id"
#: The deploy time the sample data is laid out around (the config example's ``deployed_at``).
DEPLOYED_AT: Final = datetime(2025, 10, 23, 9, 0, tzinfo=UTC)
WATCHED_TABLES: Final = ("conversations", "customer_configs", "scraper_configs")
OPTIONAL_TABLES: Final = ("scraper_configs",)
EXPECTED_INDEXES: Final[Mapping[str, tuple[str, ...]]] = {
    "conversations": ("idx_conversations_organization_id",),
    "customer_configs": ("idx_customer_configs_organization_id",),
    "scraper_configs": ("idx_scraper_configs_organization_id",),
}
SCENARIOS: Final = ("pre_migration", "healthy", "anomalies")

#: What ``apply_anomalies`` adds, row counts per table and kind.
ANOMALIES: Final[Mapping[str, Mapping[str, int]]] = {
    "conversations": {"missing_without_legacy": 5, "orphans": 7, "post_deploy_orphans": 4},
    "customer_configs": {"missing_without_legacy": 1, "orphans": 2},
}

#: The numbers ``truth()`` returns for ``build_scenario(conn, "healthy")`` with default sizes
#: (3 organizations x 2 domains, 1000 conversations of which 100 after deploy).
HEALTHY_TRUTH: Final[Mapping[str, Mapping[str, Any]]] = {
    "conversations": {
        "total": 1000, "with_new": 1000, "with_legacy": 1000, "missing_new": 0,
        "missing_without_legacy": 0, "orphans": 0, "post_deploy_total": 100,
        "post_deploy_missing": 0, "policies_on_new": 1, "policies_on_legacy": 0,
        "backfill_ratio": 1.0, "rls_enabled": True, "orphan_ids": (),
        "indexes": {"idx_conversations_organization_id": {
            "exists": True, "valid": True, "ready": True, "covers_new": True}},
    },
    "customer_configs": {
        "total": 6, "with_new": 6, "with_legacy": 6, "missing_new": 0,
        "missing_without_legacy": 0, "orphans": 0, "post_deploy_total": 0,
        "post_deploy_missing": 0, "policies_on_new": 1, "policies_on_legacy": 0,
        "backfill_ratio": 1.0, "rls_enabled": True, "orphan_ids": (),
        "indexes": {"idx_customer_configs_organization_id": {
            "exists": True, "valid": True, "ready": True, "covers_new": True}},
    },
    "scraper_configs": {
        "total": 6, "with_new": 6, "with_legacy": 6, "missing_new": 0,
        "missing_without_legacy": 0, "orphans": 0, "post_deploy_total": 0,
        "post_deploy_missing": 0, "policies_on_new": 1, "policies_on_legacy": 0,
        "backfill_ratio": 1.0, "rls_enabled": True, "orphan_ids": (),
        "indexes": {"idx_scraper_configs_organization_id": {
            "exists": True, "valid": True, "ready": True, "covers_new": True}},
    },
}  # fmt: skip

#: The numbers ``truth()`` returns after ``apply_anomalies`` on the default healthy data.
#: Conversation ids: 1..1000 healthy, 1001..1005 missing without legacy, 1006..1012 orphans
#: (before deploy), 1013..1016 post-deploy orphans (created at DEPLOYED_AT + 0..3 s).
ANOMALY_TRUTH: Final[Mapping[str, Mapping[str, Any]]] = {
    "conversations": {
        "exists": True, "total": 1016, "with_new": 1000, "with_legacy": 1011,
        "missing_new": 16, "missing_without_legacy": 5, "orphans": 11,
        "orphan_ids": tuple(range(1006, 1017)), "backfill_ratio": 1000 / 1016,
        "post_deploy_total": 104,
        "post_deploy_missing": 4, "rls_enabled": True, "policies_on_new": 1,
        "policies_on_legacy": 1,
        "indexes": {"idx_conversations_organization_id": {
            "exists": True, "valid": False, "ready": True, "covers_new": True}},
    },
    "customer_configs": {
        "exists": True, "total": 9, "with_new": 6, "with_legacy": 8, "missing_new": 3,
        "missing_without_legacy": 1, "orphans": 2, "backfill_ratio": 6 / 9,
        "orphan_ids": ("a63a704d-c94c-88ce-c4eb-a2e698056f7e",
                       "f317b5ff-e53b-eaa4-d225-3a1740db143e"),
        "post_deploy_total": 0,
        "post_deploy_missing": 0, "rls_enabled": True, "policies_on_new": 0,
        "policies_on_legacy": 1,
        "indexes": {"idx_customer_configs_organization_id": {
            "exists": False, "valid": False, "ready": False, "covers_new": False}},
    },
    "scraper_configs": {"exists": False},
}  # fmt: skip
