"""Shared fixtures: one ephemeral PostgreSQL cluster per session, a fresh database per test.

- ``pg_cluster`` (session): the running ``EphemeralCluster``; a test may ``stop_server()``
  it, the per-test teardown starts it again.
- ``pg_template`` (session): name of a template database holding pg_stat_statements (schema
  ``extensions``) + the sample schema + the migration + healthy data
  (``sample.build_scenario(conn, "healthy")``, numbers in ``sample.HEALTHY_TRUTH``).
- ``db_name`` / ``db_dsn`` (function): a new database copied from the template, dropped after.
- ``pg_conn`` (function): an autocommit superuser connection to it, e.g. to add anomalies.
- ``empty_db_dsn`` (function): a new, empty database (from template0), dropped after.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migration_watch.demo import sample
from migration_watch.pgcluster import EphemeralCluster

_counter = itertools.count(1)
TEMPLATE_DB = "mw_template"


def _unique_name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EphemeralCluster]:
    """An ephemeral PostgreSQL cluster for the whole session (stopped and removed at the end)."""
    cluster = EphemeralCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_template(pg_cluster: EphemeralCluster) -> str:
    """A template database with extensions, schema, migration and healthy data (built once)."""
    pg_cluster.create_database(TEMPLATE_DB)
    with psycopg.connect(pg_cluster.dsn(TEMPLATE_DB), autocommit=True) as conn:
        sample.build_scenario(conn, "healthy")
    # Nobody may connect to it by accident: CREATE DATABASE … TEMPLATE needs it idle.
    with pg_cluster.connect() as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false").format(
                sql.Identifier(TEMPLATE_DB)
            )
        )
    return TEMPLATE_DB


def _ensure_running(cluster: EphemeralCluster) -> None:
    if not cluster.running:
        cluster.start_server()


@pytest.fixture
def db_name(pg_cluster: EphemeralCluster, pg_template: str) -> Iterator[str]:
    """A fresh database with the healthy sample (copied from the template); dropped after."""
    _ensure_running(pg_cluster)
    name = _unique_name("mw_test")
    pg_cluster.create_database(name, template=pg_template)
    try:
        yield name
    finally:
        _ensure_running(pg_cluster)
        pg_cluster.drop_database(name)


@pytest.fixture
def db_dsn(pg_cluster: EphemeralCluster, db_name: str) -> str:
    """Superuser DSN (no password) of the fresh healthy database."""
    return pg_cluster.dsn(db_name)


@pytest.fixture
def pg_conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """Autocommit superuser connection to the fresh database (closed after the test)."""
    conn = psycopg.connect(db_dsn, autocommit=True)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def empty_db_dsn(pg_cluster: EphemeralCluster) -> Iterator[str]:
    """DSN of a new, empty database (no schema, no extension); dropped after."""
    _ensure_running(pg_cluster)
    name = _unique_name("mw_empty")
    pg_cluster.create_database(name, template="template0")
    try:
        yield pg_cluster.dsn(name)
    finally:
        _ensure_running(pg_cluster)
        pg_cluster.drop_database(name)
