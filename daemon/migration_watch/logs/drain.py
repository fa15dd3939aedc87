"""``POST /ingest/logs``: what the HTTP server calls for a log drain (no HTTP code here).

The server calls, in this order:

1. :meth:`DrainIngest.precheck` with the request headers before reading the body: a
   ``Content-Length`` over ``max_body_bytes`` is answered 413 at once (never read).
2. :meth:`DrainIngest.handle` with the headers and the body (read with that limit + 1):
   401 without a valid bearer token or HMAC signature, 413 for an oversized body, 400 for a
   malformed JSON array, 429 with ``Retry-After`` when the queue is full, else 202.
3. A consumer thread calls :meth:`DrainIngest.consume` (or takes from :attr:`queue`) and
   counts the lines with the source's classifier; with a :class:`~.deploy.DeployGate`
   (unordered: drains interleave batches) lines older than T0 are also counted as
   pre-deploy, reading every line's timestamp only while T0 is known.

Bodies are NDJSON (any body not starting with ``[``; one record per line, a last line
without newline is completed) or a JSON array of records (Vercel and Supabase drains);
array elements are turned into one line each. Lines that do not parse are counted as parse
errors like any other line, they do not fail the request. The queue is bounded in bytes, so
memory never grows without bound.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from .classify import Classifier, Counts, Samples
from .config import HttpSourceConfig
from .deploy import DeployGate

__all__ = ["DrainIngest", "DrainQueue", "DrainResponse", "body_to_lines"]


@dataclass(frozen=True)
class DrainResponse:
    """Status, JSON body and extra headers of the answer."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lower = name.lower()
    for key, val in headers.items():
        if key.lower() == lower:
            return val
    return None


_array_decoder = msgspec.json.Decoder(list[msgspec.Raw])


def body_to_lines(body: bytes, *, json_array: bool = True) -> bytes:
    """NDJSON or a JSON array → complete lines (``b""`` or ending with a newline).

    Raises ``ValueError`` for a body that starts with ``[`` but is not a JSON array.
    """
    stripped = body.lstrip(b" \t\r\n\xef\xbb\xbf")
    if json_array and stripped[:1] == b"[":
        try:
            items = _array_decoder.decode(stripped)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise ValueError(f"malformed JSON array: {exc}") from None
        lines = []
        for item in items:
            raw = bytes(item)
            if b"\n" in raw or b"\r" in raw:  # pretty-printed element: one line again
                raw = msgspec.json.encode(msgspec.json.decode(raw))
            lines.append(raw)
        return b"\n".join(lines) + b"\n" if lines else b""
    if body and not body.endswith(b"\n"):
        body += b"\n"
    return body


class DrainQueue:
    """A FIFO of line batches bounded by their total size in bytes (thread-safe)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: deque[bytes] = deque()
        self._size = 0
        self._cond = threading.Condition()

    @property
    def size_bytes(self) -> int:
        return self._size

    def offer(self, data: bytes) -> bool:
        """Append ``data`` unless that would exceed the bound; never blocks."""
        with self._cond:
            if self._size + len(data) > self.max_bytes:
                return False
            self._items.append(data)
            self._size += len(data)
            self._cond.notify()
            return True

    def take(self, timeout: float | None = None) -> bytes | None:
        """The oldest batch, waiting up to ``timeout`` seconds (None: forever); None if none."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: self._items, timeout):
                return None
            data = self._items.popleft()
            self._size -= len(data)
            return data


class DrainIngest:
    """Authentication, limits and queueing for one ``type: http`` source.

    ``token`` / ``hmac_secret`` override the config's values (the config loader reads the
    ``*_file`` variants and passes the secrets here).
    """

    def __init__(
        self,
        source: HttpSourceConfig,
        *,
        token: str | None = None,
        hmac_secret: str | None = None,
        queue: DrainQueue | None = None,
    ) -> None:
        self.source = source
        if token is None and source.token is not None:
            token = source.token.get_secret_value()
        if hmac_secret is None and source.hmac_secret is not None:
            hmac_secret = source.hmac_secret.get_secret_value()
        if not token and not hmac_secret:
            raise ValueError(f"http source {source.name!r}: no token or HMAC secret available")
        self._token = token.encode() if token else None
        self._hmac_secret = hmac_secret.encode() if hmac_secret else None
        self.queue = queue or DrainQueue(source.queue_max_bytes)
        self._retry_after = str(max(1, round(source.retry_after.total_seconds())))

    # ------------------------------------------------------------------ requests

    def precheck(self, headers: Mapping[str, str]) -> DrainResponse | None:
        """413 when the declared length is too large (before reading the body)."""
        length = _header(headers, "Content-Length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return DrainResponse(400, {"error": "invalid Content-Length"})
            if declared > self.source.max_body_bytes:
                return self._too_large()
        return None

    def authorized(self, headers: Mapping[str, str], body: bytes) -> bool:
        """A valid bearer token, or a valid HMAC signature of the body (hex, ``sha256=`` ok)."""
        if self._token is not None:
            auth = _header(headers, "Authorization") or ""
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                value.strip().encode(), self._token
            ):
                return True
        if self._hmac_secret is not None:
            signature = (_header(headers, self.source.hmac_header) or "").strip()
            _, _, hex_part = signature.rpartition("=")
            expected = hmac.new(
                self._hmac_secret, body, getattr(hashlib, self.source.hmac_algorithm)
            ).hexdigest()
            if hex_part and hmac.compare_digest(hex_part.lower().encode(), expected.encode()):
                return True
        return False

    def handle(self, headers: Mapping[str, str], body: bytes) -> DrainResponse:
        """Answer one request whose body has been read (at most ``max_body_bytes`` + 1)."""
        early = self.precheck(headers)
        if early is not None:
            return early
        if len(body) > self.source.max_body_bytes:
            return self._too_large()
        if not self.authorized(headers, body):
            return DrainResponse(
                401, {"error": "unauthorized"}, {"WWW-Authenticate": 'Bearer realm="logs"'}
            )
        try:
            lines = body_to_lines(body, json_array=self.source.format == "json")
        except ValueError as exc:
            return DrainResponse(400, {"error": str(exc)})
        if lines and not self.queue.offer(lines):
            return DrainResponse(
                429, {"error": "queue full, retry later"}, {"Retry-After": self._retry_after}
            )
        return DrainResponse(202, {"accepted_bytes": len(lines), "lines": lines.count(b"\n")})

    def _too_large(self) -> DrainResponse:
        return DrainResponse(413, {"error": f"body larger than {self.source.max_body_bytes} bytes"})

    # ------------------------------------------------------------------ consumer

    def consume(
        self,
        classifier: Classifier,
        counts: Counts,
        *,
        samples: Samples | None = None,
        timeout: float | None = 0.0,
        gate: DeployGate | None = None,
        pre: Counts | None = None,
    ) -> int:
        """Count every queued batch into ``counts``; return how many batches were taken.

        Waits up to ``timeout`` seconds for the first batch (0: do not wait). With ``gate``
        and ``pre``, the pre-deploy lines are also counted into ``pre``.
        """
        taken = 0
        data = self.queue.take(timeout)
        while data is not None:
            if gate is not None and pre is not None and gate.active:
                gate.scan(classifier, data, counts, pre, samples)
            else:
                classifier.scan(data, counts, samples)
            taken += 1
            data = self.queue.take(0.0)
        return taken
