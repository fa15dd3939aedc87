"""migration-watch: watch a column-rename migration for the week after it ships."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("migration-watch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
