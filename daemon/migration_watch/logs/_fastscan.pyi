from collections.abc import Sequence
from typing import Any

MAX_DEPTH: int
MAX_LIST: int
#: In field_values' result: the line is not plain, read it in Python.
UNDECIDED: object

def field_values(
    buf: bytes | bytearray | memoryview, start: int, end: int, key: bytes, max_line_bytes: int, /
) -> list[Any]: ...

class Scanner:
    def __init__(
        self,
        legacy: bytes,
        new: bytes,
        exclude: Sequence[bytes],
        fallback: Sequence[bytes],
        fallback_requires_legacy: bool,
        level_key: bytes | None,
        status_key: bytes | None,
        search_keys: Sequence[bytes] | None,
        level_strings: Sequence[bytes],
        level_ints: Sequence[int],
        status_min: int,
        max_line_bytes: int,
    ) -> None: ...
    def scan(
        self, buf: bytes | bytearray | memoryview, start: int, end: int, samples: int, /
    ) -> tuple[
        int,
        int,
        int,
        int,
        int,
        int,
        int,
        tuple[list[tuple[int, int]], ...] | None,
    ]: ...
