"""``verdict.settings``: what the verdict expects, derived from the config, and its guards."""

from __future__ import annotations

from typing import Any

import pytest

from migration_watch.verdict import DEFAULT_REQUIRED, VerdictSettings

from .test_verdict import CONF, CONFIG, CONV, SCRAPER, make_config


def test_settings_for_config_follow_tables_and_enabled_checks() -> None:
    s = VerdictSettings.for_config(CONFIG)
    assert s.tables == (CONV, CONF, SCRAPER)
    assert s.index_tables == (CONV, SCRAPER)
    assert s.rls_tables == (CONV, CONF)
    assert s.post_deploy_tables == (CONV,)
    assert s.required == {
        "coverage",
        "orphans",
        "indexes",
        "rls",
        "legacy_column",
        "post_deploy_writes",
    }
    bare = VerdictSettings.for_config(make_config([{"name": "t"}]), final_runs=3)
    assert bare.required == {"coverage", "orphans", "legacy_column"}
    assert bare.final_runs == 3
    with pytest.raises(ValueError, match="unknown criteria"):
        VerdictSettings(required=frozenset({"speed"}))


def test_settings_for_config_with_logs_and_probes_require_their_criteria() -> None:
    s = VerdictSettings.for_config(CONFIG, log_checks=True, probes=True)
    assert {"legacy_errors", "error_budget", "latency"} <= s.required
    assert "query_ratio_trend" not in s.required
    assert VerdictSettings().required == DEFAULT_REQUIRED


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"final_runs": 0}, "final_runs must be at least 1"),
        ({"latency_tolerance": -0.01}, "tolerances must not be negative"),
        ({"max_final_legacy_ratio": -1.0}, "tolerances must not be negative"),
        ({"error_budget_failed_runs": -1}, "error_budget_failed_runs must not be negative"),
    ],
)
def test_settings_reject_impossible_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VerdictSettings(**values)


def test_settings_json_lists_the_required_criteria_sorted() -> None:
    doc = VerdictSettings(required=frozenset({"rls", "coverage"}), final_runs=3).to_json()
    assert doc == {
        "required": ["coverage", "rls"],
        "final_runs": 3,
        "latency_tolerance": 0.10,
        "max_final_legacy_ratio": 0.05,
        "error_budget_failed_runs": 0,
    }
