"""The checks: one module per family, each split into *measure* and *judge*.

*measure* sends the SQL (identifiers through ``psycopg.sql``, read-only transactions, the
``/* migration-watch */`` tag) and returns plain numbers and dataclasses; *judge* is pure:
measurements + thresholds → :class:`~migration_watch.results.Result`s.

* :mod:`.catalog`: what the system catalogs say about a watched table (every family reads it);
* :mod:`.coverage`: ``coverage``, ``orphans``, ``post_deploy_writes``;
* :mod:`.schema`: ``schema``, ``index_usage`` (judged from the catalog lookup alone);
* :mod:`.rls`: ``rls``;
* :mod:`.query_ratio`: ``query_ratio`` (pg_stat_statements deltas);
* :mod:`.latency`: ``latency``, ``index_plan`` (the probes against their baseline);
* :mod:`.suite`: runs the families, each guarded, in report order.
"""

from .query_ratio import QueryRatioTracker
from .suite import CHECK_NAMES, CheckContext, run_suite

__all__ = ["CHECK_NAMES", "CheckContext", "QueryRatioTracker", "run_suite"]
