"""Application logs: parse, classify and count lines from files and HTTP drains.

* :mod:`.config`: the ``logs:`` section (:class:`LogsConfig`).
* :mod:`.parse`: line formats (json, logfmt, text) and what a parse error is.
* :mod:`.classify`: :class:`Classifier` (classes, per line and per 1 MiB chunk); what it
  counts, :class:`Counts` and :class:`Samples`, is in :mod:`.counts`, how it finds column
  names and patterns in :mod:`.match`.
* :mod:`.scanner`: :func:`scan_chunk`, :class:`LineStream`, :func:`scan_files` (``logs scan``).
* :mod:`.deploy`: which lines are older than the deployment (:class:`DeployGate`,
  :class:`TimestampReader`): the pre-deploy baseline of ``log_errors``.
* :mod:`.drain`: ``POST /ingest/logs`` logic (:class:`DrainIngest`).
* :mod:`.follower`: continuous, exactly-once following of ``file`` sources
  (:class:`~.follower.LogFollower`, :class:`~.follower.SourceFollower`); import it from
  there (it needs the state store, which this package does not load for ``logs scan``).
  It runs :mod:`.discovery` (which files, rotation: rename, copytruncate, replacement) and
  :mod:`.reader` (one open file read in bounded chunks into complete lines).
"""

from .classify import Classifier
from .config import ClassesConfig, FieldsConfig, FileSourceConfig, HttpSourceConfig, LogsConfig
from .counts import CLASSES, Counts, Samples, redact
from .deploy import DeployGate, TimestampReader, to_micros
from .drain import DrainIngest, DrainQueue, DrainResponse
from .scanner import LineStream, ScanReport, scan_chunk, scan_files

__all__ = [
    "CLASSES",
    "ClassesConfig",
    "Classifier",
    "Counts",
    "DeployGate",
    "DrainIngest",
    "DrainQueue",
    "DrainResponse",
    "FieldsConfig",
    "FileSourceConfig",
    "HttpSourceConfig",
    "LineStream",
    "LogsConfig",
    "Samples",
    "ScanReport",
    "TimestampReader",
    "redact",
    "scan_chunk",
    "scan_files",
    "to_micros",
]
