"""The metric catalogue: declared once, read by every collector and by the README's table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from migration_watch import metrics
from migration_watch.metrics import CATALOGUE, METRIC_NAMES, FamilySpec

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_table() -> dict[str, tuple[str, tuple[str, ...]]]:
    """``metric -> (type, label names)`` from the README's metrics table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in section.splitlines():
        m = re.match(r"^\| `(migration_watch_\w+)` \|([^|]+)\|([^|]*)\|", line)
        if not m:
            continue
        labels_cell = re.sub(r"\([^)]*\)", "", m.group(3))  # drop the listed label values
        rows[m.group(1)] = (
            m.group(2).strip().split()[0],
            tuple(re.findall(r"`(\w+)`", labels_cell)),
        )
    return rows


def test_names_are_unique_and_follow_conventions() -> None:
    names = [s.name for s in CATALOGUE]
    assert len(names) == len(set(names))
    for spec in CATALOGUE:
        assert spec.family_name.startswith("migration_watch_")
        assert spec.type in {"counter", "gauge", "info"}
        assert spec.owner in {"runner", "week", "alerting", "logs"}
        suffix = {"counter": "_total", "info": "_info"}.get(spec.type)
        if suffix:  # added by the type, never declared
            assert not spec.name.endswith(suffix), spec.name
        assert spec.help.endswith("."), spec.name
        assert len(set(spec.labels)) == len(spec.labels)
    counters = {s.sample_name for s in CATALOGUE if s.type == "counter"}
    assert all(n.endswith("_total") for n in counters)
    assert metrics.CATALOGUE[0].sample_name == "migration_watch_build_info"


def test_metric_names_are_the_runners_families_in_order() -> None:
    runner = [s for s in CATALOGUE if s.owner == "runner"]
    assert tuple(s.sample_name for s in runner) == METRIC_NAMES
    assert "migration_watch_database_up" in METRIC_NAMES
    assert "migration_watch_log_lines_total" not in METRIC_NAMES


def test_readme_table_is_the_catalogue() -> None:
    table = _readme_table()
    catalogue = {s.sample_name: (s.type, s.labels) for s in CATALOGUE}
    assert table == catalogue


@pytest.mark.parametrize(
    ("factory", "name", "cls"),
    [
        (metrics.gauge, "rows_missing", GaugeMetricFamily),
        (metrics.counter, "log_lines", CounterMetricFamily),
        (metrics.info, "build", InfoMetricFamily),
    ],
)
def test_factories_build_the_declared_family(factory: object, name: str, cls: type) -> None:
    family = factory(name)  # type: ignore[operator]
    spec = next(s for s in CATALOGUE if s.name == name)
    assert isinstance(family, cls)
    assert family.name == spec.family_name
    assert family.documentation == spec.help
    assert family.samples == []


def test_an_undeclared_or_mistyped_family_is_refused() -> None:
    with pytest.raises(KeyError):
        metrics.gauge("rows_missng")
    with pytest.raises(TypeError, match="is a counter, not a gauge"):
        metrics.gauge("log_lines")


def test_spec_sample_names() -> None:
    assert FamilySpec("a", "counter", "A.").sample_name == "migration_watch_a_total"
    assert FamilySpec("b", "info", "B.").sample_name == "migration_watch_b_info"
    assert FamilySpec("c_seconds", "gauge", "C.").sample_name == "migration_watch_c_seconds"
