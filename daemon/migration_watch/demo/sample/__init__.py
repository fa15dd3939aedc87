"""The sample application database: schema, the expand migration, data and known anomalies.

A Supabase-like app (``auth.users`` + ``auth.uid()``, organizations, organization_members,
customer_configs, domains, conversations, messages, scraper_configs, RLS) whose tenant key
moves from ``customer_id`` to ``organization_id``. Used by the tests, the benchmark and the demo.

Every function takes an autocommit psycopg connection as a superuser (the anomaly builders
touch catalogs; ``populate`` skips FK triggers while bulk loading) and runs its data
generation server-side (``INSERT … SELECT generate_series``), so millions of rows are quick.

Typical use::

    install_extensions(conn)                 # pg_stat_statements in schema "extensions"
    build_scenario(conn, "healthy")          # schema + data + migration; returns a Truth
    truth = apply_anomalies(conn)            # the documented anomalies, see ANOMALY_TRUTH
    assert truth["conversations"].orphans == 11

Vocabulary (new column ``organization_id``, legacy column ``customer_id``):
    missing_new             rows with organization_id NULL (whatever customer_id is)
    missing_without_legacy  organization_id NULL and customer_id NULL
    orphans                 organization_id NULL and customer_id NOT NULL (checklist 5.1 query 3)
    post_deploy_missing     created_at >= deployed_at and organization_id NULL
"""

from .anomalies import (
    add_missing_without_legacy,
    add_orphans,
    add_post_deploy_rows,
    disable_rls,
    drop_index,
    drop_legacy_column,
    drop_optional_table,
    invalidate_index,
    legacy_policy,
)
from .facts import (
    ANOMALIES,
    ANOMALY_TRUTH,
    DEPLOYED_AT,
    EXPECTED_INDEXES,
    HEALTHY_TRUTH,
    LEGACY_COLUMN,
    NEW_COLUMN,
    OPTIONAL_TABLES,
    SCENARIOS,
    SCHEMA,
    WATCHED_TABLES,
)
from .populate import populate, vacuum_analyze
from .scenarios import apply_anomalies, build_scenario
from .schema import apply_migration, install_extensions, load_schema, migration_sql, schema_sql
from .truth import IndexTruth, PolicyTruth, TableTruth, Truth, truth

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
    "IndexTruth",
    "PolicyTruth",
    "TableTruth",
    "Truth",
    "add_missing_without_legacy",
    "add_orphans",
    "add_post_deploy_rows",
    "apply_anomalies",
    "apply_migration",
    "build_scenario",
    "disable_rls",
    "drop_index",
    "drop_legacy_column",
    "drop_optional_table",
    "install_extensions",
    "invalidate_index",
    "legacy_policy",
    "load_schema",
    "migration_sql",
    "populate",
    "schema_sql",
    "truth",
    "vacuum_analyze",
]
