"""The demo's application traffic on the virtual clock: the backfill job, the widget bug and
its fix, healthy writes and reads moving from the legacy column to the new one."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta
from typing import Any

import psycopg
import structlog

from ..clock import ScaledClock

__all__ = ["BACKFILL_DONE", "BUG_FIXED", "TrafficGenerator"]

log = structlog.get_logger(__name__)

BACKFILL_DONE = timedelta(hours=6)
BUG_FIXED = timedelta(hours=30)


def _legacy_share(elapsed: timedelta) -> float:
    """Share of application queries still on the legacy column, fading out over the week."""
    hours = elapsed.total_seconds() / 3600
    if hours >= 96:
        return 0.0
    return max(0.0, 0.8 * (1 - hours / 96))


class TrafficGenerator:
    """The sample app's traffic on the virtual clock (a thread; stop() to end it)."""

    def __init__(self, dsn: str, clock: ScaledClock, t0: datetime, *, seed: int = 7) -> None:
        self._dsn = dsn
        self._clock = clock
        self._t0 = t0
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-traffic", daemon=True)
        self._fixed = False
        self._backfilled = False
        self.bug_rows = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        with psycopg.connect(self._dsn, autocommit=True, application_name="demo-app") as conn:
            domains = [r[0] for r in conn.execute("SELECT id FROM public.domains ORDER BY id")]
            while not self._stop.wait(0.05):
                try:
                    self._step(conn, domains)
                except psycopg.Error as exc:  # the database is being stopped
                    log.debug("demo traffic step failed", error=str(exc))
                    if self._stop.is_set():
                        return

    def _step(self, conn: psycopg.Connection[Any], domains: list[Any]) -> None:
        now = self._clock.now()
        elapsed = now - self._t0
        if elapsed < BACKFILL_DONE or not self._backfilled:
            # the backfill job: a batch per step, all done by T0+6h
            conn.execute(
                "UPDATE public.conversations c SET organization_id = cc.organization_id"
                " FROM public.domains d JOIN public.customer_configs cc"
                " ON cc.id = d.customer_config_id"
                " WHERE c.id IN (SELECT id FROM public.conversations"
                "   WHERE organization_id IS NULL AND created_at < %s LIMIT %s)"
                " AND c.domain_id = d.id",
                (self._t0, 200 if elapsed < BACKFILL_DONE else 1_000_000),
            )
            self._backfilled = elapsed >= BACKFILL_DONE
        if elapsed < BUG_FIXED:
            # the bug: the widget endpoint still writes customer_id only
            if self._rng.random() < 0.5:
                domain = self._rng.choice(domains)
                conn.execute(
                    "INSERT INTO public.conversations"
                    " (domain_id, customer_id, session_id, created_at)"
                    " SELECT d.id, d.customer_id, 'widget', %s FROM public.domains d"
                    " WHERE d.id = %s",
                    (now, domain),
                )
                self.bug_rows += 1
        elif not self._fixed:
            conn.execute(
                "UPDATE public.conversations c SET organization_id = cc.organization_id"
                " FROM public.domains d JOIN public.customer_configs cc"
                " ON cc.id = d.customer_config_id"
                " WHERE c.domain_id = d.id AND c.organization_id IS NULL"
            )
            self._fixed = True
            log.info("demo: the widget endpoint fix shipped; bad rows backfilled")
        # healthy writes (new code) and reads
        domain = self._rng.choice(domains)
        conn.execute(
            "INSERT INTO public.conversations (domain_id, customer_id, organization_id,"
            " session_id, created_at)"
            " SELECT d.id, d.customer_id, cc.organization_id, 'app', %s FROM public.domains d"
            " JOIN public.customer_configs cc ON cc.id = d.customer_config_id WHERE d.id = %s",
            (now, domain),
        )
        for _ in range(4):
            if self._rng.random() < _legacy_share(elapsed):
                conn.execute(
                    "SELECT id, created_at FROM public.conversations WHERE customer_id ="
                    " (SELECT customer_id FROM public.domains WHERE id = %s)"
                    " ORDER BY created_at DESC LIMIT 20",
                    (domain,),
                )
            else:
                conn.execute(
                    "SELECT c.id, c.created_at FROM public.conversations c WHERE"
                    " c.organization_id = (SELECT cc.organization_id FROM public.domains d"
                    " JOIN public.customer_configs cc ON cc.id = d.customer_config_id"
                    " WHERE d.id = %s) ORDER BY c.created_at DESC LIMIT 20",
                    (domain,),
                )
