"""The base of every configuration model (shared by config sections in other packages)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

__all__ = ["_Model", "_read_secret_file"]


class _Model(BaseModel):
    """Unknown keys rejected, frozen after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _read_secret_file(path: Path) -> str:
    """A secret from a ``*_file`` key (content stripped); ``ValueError`` names the file."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
