"""Result constructors, the JSON entry shape and the overall status (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from migration_watch.results import Result, ResultFields, Status, overall_status

AT = datetime(2025, 10, 23, 9, tzinfo=UTC)


def test_passed_and_failed_carry_every_field() -> None:
    fields: ResultFields = {
        "observed": {"n": 3},
        "threshold": {"max": 2},
        "details": {"via": "index"},
    }
    p = Result.passed("coverage", "public.t", "fine", table="public.t", **fields)
    f = Result.failed("coverage", "public.t", "bad", table="public.t", **fields)
    assert p.status is Status.PASS and f.status is Status.FAIL
    for r, msg in ((p, "fine"), (f, "bad")):
        assert (r.check, r.subject, r.message, r.table) == ("coverage", "public.t", msg, "public.t")
        assert r.observed == {"n": 3} and r.threshold == {"max": 2}
        assert r.details == {"via": "index"}
        assert r.measured_at is None and r.duration_seconds == 0.0


def test_pass_if_picks_the_status_only() -> None:
    ok = Result.pass_if(True, "rls", "public.t", "m", observed={"a": 1})
    ko = Result.pass_if(False, "rls", "public.t", "m", observed={"a": 1})
    assert ok.status is Status.PASS and ko.status is Status.FAIL
    assert ok == Result("rls", "public.t", Status.PASS, observed={"a": 1}, message="m")
    assert ko == Result("rls", "public.t", Status.FAIL, observed={"a": 1}, message="m")


def test_errored_and_skipped_put_the_reason_in_the_message() -> None:
    e = Result.errored("schema", "public.t", reason="timeout", table="public.t", measured_at=AT)
    assert e == Result(
        "schema", "public.t", Status.ERROR, message="timeout", table="public.t", measured_at=AT
    )
    s = Result.skipped("index_usage", "public.t.i", reason="index i does not exist")
    assert s.status is Status.SKIPPED and s.message == "index i does not exist"
    # Left-out fields keep the dataclass defaults (what the JSON output shows).
    assert s.observed == {} and s.threshold is None and s.details == {} and s.table is None


def test_constructors_default_fields_are_not_shared() -> None:
    a, b = Result.passed("c", "s"), Result.passed("c", "s")
    assert a.observed == {} and a.observed is not b.observed
    assert a.message == ""


def test_to_json_shape() -> None:
    r = Result.failed(
        "orphans", "public.t", "2 rows", observed={"orphans": 2}, threshold={"max_orphans": 0}
    )
    assert r.to_json() == {
        "name": "orphans",
        "subject": "public.t",
        "status": "fail",
        "observed": {"orphans": 2},
        "threshold": {"max_orphans": 0},
        "details": {},
        "message": "2 rows",
    }


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], Status.PASS),
        ([Status.PASS, Status.SKIPPED], Status.PASS),
        ([Status.PASS, Status.FAIL], Status.FAIL),
        ([Status.FAIL, Status.ERROR, Status.PASS], Status.ERROR),
        ([Status.SKIPPED], Status.PASS),
    ],
)
def test_overall_status(statuses: list[Status], expected: Status) -> None:
    assert overall_status(Result("c", str(i), s) for i, s in enumerate(statuses)) is expected
