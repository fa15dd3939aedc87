"""The report's outputs: the JSON text, the dispatch by format (:func:`render`) and the
HTML + JSON files the demo writes (:func:`write_reports`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ..state import StateStore
from .build import build_report
from .html import render_html
from .markdown import render_markdown
from .model import FORMATS, ReportData

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["render", "render_json", "write_reports"]


def render_json(data: ReportData) -> str:
    """``report --format json``: indented, UTF-8 (non-ASCII kept)."""
    return json.dumps(data.to_json(), indent=2, ensure_ascii=False) + "\n"


_RENDERERS: Mapping[str, Callable[[ReportData], str]] = {
    "markdown": render_markdown,
    "html": render_html,
    "json": render_json,
}


def render(data: ReportData, fmt: str = "markdown") -> str:
    """Render in one of :data:`FORMATS` (``ValueError`` otherwise)."""
    try:
        renderer = _RENDERERS[fmt]
    except KeyError:
        raise ValueError(
            f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}"
        ) from None
    return renderer(data)


def write_reports(
    config: Config, store: StateStore, output_dir: Path, *, now: datetime
) -> tuple[Path, Path, str | None]:
    """Write ``migration-watch-report.html`` and ``.json`` into ``output_dir``; returns both
    paths and the verdict's outcome (used by the demo)."""
    data = build_report(store, config=config, now=now, phases=config.cadence.phases())
    output_dir.mkdir(parents=True, exist_ok=True)
    html_path = output_dir / "migration-watch-report.html"
    json_path = output_dir / "migration-watch-report.json"
    html_path.write_text(render_html(data), encoding="utf-8")
    json_path.write_text(render_json(data), encoding="utf-8")
    doc = data.to_json()
    verdict = doc.get("verdict") or {}
    outcome = verdict.get("outcome") if isinstance(verdict, dict) else None
    return html_path, json_path, outcome
