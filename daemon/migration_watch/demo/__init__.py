"""``migration-watch demo``: the whole monitoring week in minutes, on a throw-away database.

* :mod:`.run`: the command (:func:`~.run.run_demo`, :func:`~.run.main_demo`): the cluster, the
  config, the service on a scaled clock, the progress lines and the report at the end;
* :mod:`.traffic`: :class:`~.traffic.TrafficGenerator`, the sample app's traffic that tells the
  story below on the virtual clock;
* :mod:`.sample`: the sample Supabase-like app (schema, migration, data, anomalies, truth), also
  used by the tests and the benchmark.

Import from those modules: this face loads none of them, so the tests and the benchmark can
import :mod:`.sample` without the service.

Starts an :class:`~migration_watch.pgcluster.EphemeralCluster`, loads the sample app with a
partly backfilled dataset, runs a small traffic generator on the same (virtual) clock, and runs
the real :class:`~migration_watch.service.Service` with a
:class:`~migration_watch.cadence.ScaledClock` (7 days in about 5 minutes by default; the pulse
stays in real time). The story of the week:

* T0: 3% of the older conversations still lack ``organization_id``; a backfill job finishes
  them during the first 6 hours;
* T0 … T0+30h: one code path (the "widget" endpoint) still writes conversations with only
  ``customer_id`` — ``post_deploy_writes`` and ``orphans`` fail; at T0+30h the fix ships and the
  bad rows are backfilled, so the next run passes;
* application queries move from ``customer_id`` (80% at T0) to ``organization_id`` (100% from
  day 5), visible in ``query_ratio`` and ``migration_watch_statement_calls_total``.

It prints progress (day, next run, failing checks) and, at the end, the report's path.
"""
