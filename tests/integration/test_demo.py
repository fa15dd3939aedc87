"""The demo runs the whole week end to end at high speed; its report shows the injected bug
detected and then resolved, and the final verdict."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path

from migration_watch.demo.run import run_demo
from migration_watch.demo.traffic import BUG_FIXED


def test_demo_week_end_to_end(tmp_path: Path) -> None:
    out = io.StringIO()
    result = run_demo(
        speed=40_000,  # 7 days in about 15 s
        output_dir=tmp_path / "reports",
        listen="127.0.0.1:0",
        conversations=2_000,
        out=out,
        pulse=timedelta(seconds=1),
    )
    text = out.getvalue()
    assert f"report: {result.report_path}" in text
    assert result.report_path.exists() and result.json_path.exists()
    # the widget bug: caught at a day-1 run, resolved after the fix shipped at T0+30h
    assert result.bug_detected_at is not None and result.bug_resolved_at is not None
    doc = json.loads(result.json_path.read_text())
    t0 = doc["deployment"]["deployed_at"]
    from datetime import datetime

    t0_dt = datetime.fromisoformat(t0)
    assert result.bug_detected_at - t0_dt < timedelta(hours=24)
    assert result.bug_resolved_at - t0_dt >= BUG_FIXED
    assert result.bug_resolved_at - t0_dt < BUG_FIXED + timedelta(hours=13)
    post = [p for c in doc["checks"] if c["check"] == "post_deploy_writes" for p in c["history"]]
    statuses = [p["status"] for p in post]
    assert "fail" in statuses and statuses[-1] == "pass"
    # the whole week ran: every planned run is done, late or missed; the verdict is final
    assert len(doc["runs"]) >= 32
    assert doc["verdict"]["final"] is True
    assert doc["verdict"]["outcome"] in ("met", "not_met", "not_measured")
    html = result.report_path.read_text()
    assert 'data-chart="missing:public.conversations"' in html
    # the incident timeline tells the bug: failing from its detection to its resolution
    (entry,) = [
        e
        for e in doc["timeline"]
        if (e["check"], e["subject"]) == ("post_deploy_writes", "public.conversations")
    ]
    first, last = entry["intervals"][0], entry["intervals"][-1]
    assert first["status"] == "fail" and last["to"] is not None
    assert abs(datetime.fromisoformat(first["from"]) - result.bug_detected_at) < timedelta(
        minutes=1
    )
    assert abs(datetime.fromisoformat(last["to"]) - result.bug_resolved_at) < timedelta(minutes=1)
    assert html.index('data-chart="timeline"') < html.index('id="progress"')
