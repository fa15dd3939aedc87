"""The ephemeral PostgreSQL launcher and the sample database's documented truths."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from migration_watch.demo import sample
from migration_watch.pgcluster import ClusterError, EphemeralCluster, find_bin_dir

Conn = psycopg.Connection[Any]


def _scalar(conn: Conn, query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


# -- launcher --------------------------------------------------------------------------------


def test_cluster_settings_and_pg_stat_statements(
    pg_cluster: EphemeralCluster, pg_conn: Conn
) -> None:
    assert _scalar(pg_conn, "SHOW listen_addresses") == "127.0.0.1"
    assert int(_scalar(pg_conn, "SHOW port")) == pg_cluster.port
    assert _scalar(pg_conn, "SHOW shared_preload_libraries") == "pg_stat_statements"
    assert _scalar(pg_conn, "SHOW pg_stat_statements.track") == "all"
    assert _scalar(pg_conn, "SHOW fsync") == "off"
    assert _scalar(pg_conn, "SELECT current_setting('server_version_num')::int") >= 150000
    # The extension lives in schema "extensions", as on Supabase, and records this database.
    schema = _scalar(
        pg_conn,
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_stat_statements'",
    )
    assert schema == "extensions"
    pg_conn.execute("SELECT count(*) FROM public.conversations WHERE customer_id IS NOT NULL")
    calls = _scalar(
        pg_conn,
        "SELECT coalesce(sum(calls), 0) FROM extensions.pg_stat_statements "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND query LIKE '%FROM public.conversations WHERE customer_id IS NOT NULL%'",
    )
    assert calls == 1


def test_stop_and_start_server_keep_data_and_port(
    pg_cluster: EphemeralCluster, db_dsn: str
) -> None:
    port = pg_cluster.port
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
    pg_cluster.stop_server()
    assert not pg_cluster.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(db_dsn, connect_timeout=2)
    pg_cluster.start_server()
    assert pg_cluster.running
    assert pg_cluster.port == port
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        assert _scalar(conn, "SELECT v FROM kept") == 42
    pg_cluster.restart()
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        assert _scalar(conn, "SELECT v FROM kept") == 42
        assert _scalar(conn, "SELECT count(*) FROM conversations") == 1000


def test_password_auth_for_roles_other_than_postgres(
    pg_cluster: EphemeralCluster, pg_conn: Conn, db_name: str
) -> None:
    pg_conn.execute("CREATE ROLE mw_reader LOGIN PASSWORD 's3cret-pw'")
    try:
        good = pg_cluster.dsn(db_name, user="mw_reader", password="s3cret-pw")
        with psycopg.connect(good) as conn:
            assert _scalar(conn, "SELECT current_user") == "mw_reader"
        bad = pg_cluster.dsn(db_name, user="mw_reader", password="wrong")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(bad)
    finally:
        pg_conn.execute("DROP ROLE mw_reader")


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory the ``postgres`` system user can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="mw-test-base-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_own_cluster_lifecycle_without_preload(reachable_dir: Path) -> None:
    cluster = EphemeralCluster(base_dir=reachable_dir, shared_preload=False)
    with cluster:
        directory = cluster.directory
        assert directory.parent == reachable_dir
        assert cluster.bin_dir == find_bin_dir()
        with cluster.connect() as conn:
            assert _scalar(conn, "SELECT 1") == 1
            assert _scalar(conn, "SHOW shared_preload_libraries") == ""
        cluster.create_database("other")
        cluster.drop_database("other")
    assert not directory.exists()
    cluster.stop()  # idempotent


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to 'postgres'")
def test_unreachable_base_dir_is_a_clear_error(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(ClusterError, match="cannot traverse"):
        EphemeralCluster(base_dir=private).start()
    assert list(private.iterdir()) == []  # the temp dir was cleaned up


def test_missing_binaries_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="does not contain initdb and pg_ctl"):
        find_bin_dir(tmp_path)
    with pytest.raises(ClusterError, match="not started"):
        _ = EphemeralCluster().port


# -- sample data truths ----------------------------------------------------------------------


def test_template_is_the_documented_healthy_scenario(pg_conn: Conn) -> None:
    truth = sample.truth(pg_conn)
    assert truth.matches(sample.HEALTHY_TRUTH) == []
    assert _scalar(pg_conn, "SELECT count(*) FROM messages") == 2000
    assert _scalar(pg_conn, "SELECT count(*) FROM organizations") == 3
    assert _scalar(pg_conn, "SELECT count(*) FROM auth.users") == 9
    # The first post-deploy conversation sits exactly at deployed_at (inclusive boundary).
    first_post = _scalar(
        pg_conn, "SELECT min(created_at) FROM conversations WHERE created_at >= %s",
        (sample.DEPLOYED_AT,),
    )  # fmt: skip
    assert first_post == sample.DEPLOYED_AT
    last_pre = _scalar(
        pg_conn, "SELECT max(created_at) FROM conversations WHERE created_at < %s",
        (sample.DEPLOYED_AT,),
    )  # fmt: skip
    assert sample.DEPLOYED_AT - timedelta(days=1) < last_pre < sample.DEPLOYED_AT


def test_anomalies_scenario_matches_documented_truth(pg_conn: Conn) -> None:
    truth = sample.apply_anomalies(pg_conn)
    assert truth.matches(sample.ANOMALY_TRUTH) == []
    conversations = truth["conversations"]
    assert conversations.orphan_ids[:5] == (1006, 1007, 1008, 1009, 1010)
    assert conversations.backfill_ratio == pytest.approx(0.984252, abs=1e-6)
    assert {p.name for p in truth["customer_configs"].policies} == {
        "customer_configs_customer_access"
    }
    assert truth["scraper_configs"].exists is False


def test_backfill_and_direct_load_agree(pg_conn: Conn, empty_db_dsn: str) -> None:
    """Template: data then migration (backfill). Here: migration then data (direct)."""
    checksum = (
        "SELECT md5(string_agg(id || ':' || organization_id || ':' || customer_id, ',' "
        "ORDER BY id)) FROM conversations"
    )
    with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
        sample.load_schema(conn)
        sample.apply_migration(conn)
        sample.populate(conn)
        assert sample.truth(conn).matches(sample.HEALTHY_TRUTH) == []
        assert _scalar(conn, checksum) == _scalar(pg_conn, checksum)


def test_pre_migration_scenario_and_idempotent_migration(empty_db_dsn: str) -> None:
    with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
        truth = sample.build_scenario(
            conn, "pre_migration", extensions=False, conversations=20, organizations=2, seed=7
        )
        conversations = truth["conversations"]
        assert conversations.new_column_present is False
        assert conversations.legacy_column_present is True
        assert (conversations.total, conversations.with_legacy) == (20, 20)
        assert conversations.missing_new is None
        assert conversations.backfill_ratio is None
        assert (conversations.post_deploy_total, conversations.post_deploy_missing) == (2, None)
        assert (conversations.policies_on_new, conversations.policies_on_legacy) == (0, 1)
        assert not conversations.indexes["idx_conversations_organization_id"].exists
        sample.apply_migration(conn)
        sample.apply_migration(conn)  # idempotent
        after = sample.truth(conn)
        for table in sample.WATCHED_TABLES:
            facts = after[table]
            assert facts.new_column_type == "uuid"
            assert facts.missing_new == 0, table
            assert (facts.policies_on_new, facts.policies_on_legacy) == (1, 0), table
        assert after["conversations"].total == 20
        assert after["customer_configs"].total == 4


def test_rls_policies_follow_the_organization(pg_conn: Conn) -> None:
    owner, org = pg_conn.execute(
        "SELECT user_id, organization_id FROM organization_members "
        "WHERE role = 'owner' ORDER BY created_at LIMIT 1"
    ).fetchone() or (None, None)
    expected = _scalar(
        pg_conn, "SELECT count(*) FROM conversations WHERE organization_id = %s", (org,)
    )
    assert 0 < expected < 1000
    with pg_conn.transaction():
        pg_conn.execute("SET LOCAL ROLE authenticated")
        pg_conn.execute("SELECT set_config('request.jwt.claim.sub', %s, true)", (str(owner),))
        assert _scalar(pg_conn, "SELECT auth.uid()") == owner
        assert _scalar(pg_conn, "SELECT count(*) FROM conversations") == expected
        assert _scalar(pg_conn, "SELECT count(*) FROM customer_configs") == 2
    with pg_conn.transaction():
        pg_conn.execute("SET LOCAL ROLE anon")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            pg_conn.execute("SELECT count(*) FROM conversations")


def test_single_anomaly_builders(pg_conn: Conn) -> None:
    ids = sample.add_post_deploy_rows(pg_conn, 3, sample.DEPLOYED_AT + timedelta(hours=1))
    assert ids == [1001, 1002, 1003]
    sample.add_missing_without_legacy(pg_conn, "scraper_configs", 2)
    sample.drop_index(pg_conn, "idx_scraper_configs_organization_id")
    sample.invalidate_index(pg_conn, "idx_customer_configs_organization_id", ready=False)
    sample.legacy_policy(pg_conn, "scraper_configs", replace=True)
    sample.disable_rls(pg_conn, "customer_configs")
    sample.drop_legacy_column(pg_conn, "conversations")
    truth = sample.truth(pg_conn)
    conversations = truth["conversations"]
    assert conversations.legacy_column_present is False
    assert (conversations.total, conversations.missing_new) == (1003, 3)
    assert (conversations.post_deploy_total, conversations.post_deploy_missing) == (103, 3)
    assert conversations.orphans is None  # undefined without the legacy column
    scraper = truth["scraper_configs"]
    assert (scraper.total, scraper.missing_without_legacy, scraper.orphans) == (8, 2, 0)
    assert not scraper.indexes["idx_scraper_configs_organization_id"].exists
    assert (scraper.policies_on_new, scraper.policies_on_legacy) == (0, 1)
    configs = truth["customer_configs"]
    assert configs.rls_enabled is False
    index = configs.indexes["idx_customer_configs_organization_id"]
    assert (index.exists, index.valid, index.ready) == (True, False, False)


def test_builders_reject_unknown_names(pg_conn: Conn) -> None:
    with pytest.raises(ValueError, match="unknown table"):
        sample.add_orphans(pg_conn, "users; DROP TABLE conversations", 1)
    with pytest.raises(ValueError, match="not found"):
        sample.invalidate_index(pg_conn, "no_such_index")
    with pytest.raises(ValueError, match="unknown scenario"):
        sample.build_scenario(pg_conn, "nope")
    assert _scalar(pg_conn, "SELECT count(*) FROM conversations") == 1000
