"""Alert identity as Alertmanager computes it.

prometheus/common ``model.LabelSet.Fingerprint``: FNV-1a 64 over the label names sorted
bytewise, each name and value followed by the separator byte ``0xff``. Alertmanager shows it as
16 lower-case hex digits (``%016x``), which is what :func:`fingerprint` returns.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["fingerprint", "fingerprint_int"]

_OFFSET64 = 14695981039346656037
_PRIME64 = 1099511628211
_MASK64 = (1 << 64) - 1
_SEPARATOR = 0xFF


def fingerprint_int(labels: Mapping[str, str]) -> int:
    """The 64-bit fingerprint of a label set (empty set: the FNV-1a offset basis)."""
    h = _OFFSET64
    # Go sorts label names as strings (bytewise), which for UTF-8 equals code-point order.
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode("utf-8"):
                h = ((h ^ byte) * _PRIME64) & _MASK64
            h = ((h ^ _SEPARATOR) * _PRIME64) & _MASK64
    return h


def fingerprint(labels: Mapping[str, str]) -> str:
    """The fingerprint as Alertmanager's API shows it: 16 hex digits."""
    return f"{fingerprint_int(labels):016x}"
