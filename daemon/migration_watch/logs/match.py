"""Finding column names and literal patterns in log lines and buffers of complete lines.

A column name matches as a whole identifier (:func:`has_word`): not preceded or followed by
``[A-Za-z0-9_]``, a JSON escape sequence (``\\n``, ``\\u00e9``, …) counting as a separator.
:func:`hit_lines` and :func:`hit_ends` find the lines of a buffer holding one;
:class:`PatternSet` searches plain substrings (``classes.exclude``, ``classes.fallback``)
through a few prefilter literals. Used by :mod:`.classify`.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["IDENT", "NL", "PatternSet", "has_word", "hit_ends", "hit_lines"]

#: 1 for the bytes of an identifier (``[A-Za-z0-9_]``), else 0.
IDENT = bytes(1 if chr(b).isascii() and (chr(b).isalnum() or b == 0x5F) else 0 for b in range(256))
_HEX = frozenset(b"0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = frozenset(b"nrtbf")
_BACKSLASH = 0x5C
NL = b"\n"


# --------------------------------------------------------------------------- matching


def _odd_backslashes(buf: bytes, k: int) -> bool:
    """Whether ``buf[:k + 1]`` ends with an odd number of backslashes."""
    n = 0
    while k >= 0 and buf[k] == _BACKSLASH:
        n += 1
        k -= 1
    return n % 2 == 1


def _escape_ends_at(buf: bytes, i: int) -> bool:
    """Whether ``buf[:i]`` ends with a JSON escape of a non-identifier character.

    The ``\\uXXXX`` form is tried first: ``\\u00eb`` (ë) ends with ``b`` but is not ``\\b``.
    """
    c = buf[i - 1]
    if (
        c in _HEX
        and i >= 6
        and buf[i - 5] == 0x75
        and all(b in _HEX for b in buf[i - 4 : i])
        and _odd_backslashes(buf, i - 6)
    ):
        code = int(buf[i - 4 : i], 16)
        return not (code < 128 and IDENT[code])
    return c in _SIMPLE_ESCAPES and _odd_backslashes(buf, i - 2)


def has_word(text: bytes, word: bytes) -> bool:
    """Whether ``word`` occurs in ``text`` as a whole identifier."""
    find, n, end = text.find, len(word), len(text)
    i = find(word)
    while i >= 0:
        j = i + n
        if (j >= end or not IDENT[text[j]]) and (
            i == 0 or not IDENT[text[i - 1]] or _escape_ends_at(text, i)
        ):
            return True
        i = find(word, i + 1)
    return False


def hit_lines(
    buf: bytes, lit: bytes, *, word: bool, count_lines: bool
) -> tuple[list[tuple[int, int, int]], int]:
    """Lines of ``buf`` (complete lines) containing ``lit``: ``[(index, start, end)]``.

    With ``count_lines`` the index of each line is computed and the second value is the
    number of lines in ``buf``; without it indexes are 0 and the second value is -1.
    """
    out: list[tuple[int, int, int]] = []
    find, rfind, count = buf.find, buf.rfind, buf.count
    ident, n = IDENT, len(lit)
    idx = pos = 0
    i = find(lit)
    while i >= 0:
        # buf ends with a newline and lit holds none, so buf[i + n] exists; buf[-1] is "\n".
        if word and (ident[buf[i + n]] or (ident[buf[i - 1]] and not _escape_ends_at(buf, i))):
            i = find(lit, i + 1)
            continue
        if count_lines:
            idx += count(NL, pos, i)
            pos = i
        e = find(NL, i + n)
        out.append((idx, rfind(NL, 0, i) + 1, e))
        i = find(lit, e)
    return out, (idx + count(NL, pos) if count_lines else -1)


def hit_ends(buf: bytes, word: bytes) -> list[int]:
    """End offsets of the lines of ``buf`` (complete lines) containing ``word`` as a word."""
    out: list[int] = []
    find, ident, n = buf.find, IDENT, len(word)
    i = find(word)
    while i >= 0:
        if ident[buf[i + n]] or (ident[buf[i - 1]] and not _escape_ends_at(buf, i)):
            i = find(word, i + 1)
            continue
        e = find(NL, i + n)
        out.append(e)
        i = find(word, e)
    return out


def _longest_common(a: bytes, b: bytes) -> bytes:
    """The longest substring of both ``a`` and ``b``."""
    best = b""
    for i in range(len(a)):
        for j in range(i + len(best) + 1, len(a) + 1):
            if a[i:j] in b:
                best = a[i:j]
            else:
                break
    return best


class PatternSet:
    """Plain substrings, searched through a few prefilter literals.

    Patterns sharing a substring of at least 4 bytes are grouped under it (the default
    fallback patterns all contain ``back``), so a buffer is scanned once per group.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        pats = tuple(dict.fromkeys(p.encode() for p in patterns))
        self.patterns = pats
        groups: list[tuple[bytes, list[bytes]]] = []
        for p in pats:
            for k, (lit, members) in enumerate(groups):
                common = _longest_common(lit, p)
                if len(common) >= 4:
                    groups[k] = (common, [*members, p])
                    break
            else:
                groups.append((p, [p]))
        self.groups = tuple((lit, tuple(members)) for lit, members in groups)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def in_span(self, buf: bytes, start: int, end: int) -> bool:
        find = buf.find
        for lit, pats in self.groups:
            if find(lit, start, end) >= 0 and (
                len(pats) == 1 or any(find(p, start, end) >= 0 for p in pats)
            ):
                return True
        return False

    def in_texts(self, texts: Iterable[bytes]) -> bool:
        return any(p in t for t in texts for p in self.patterns)

    def lines_in(self, buf: bytes) -> set[int]:
        """Indexes of the lines of ``buf`` (complete lines) holding one of the patterns."""
        found: set[int] = set()
        find, count = buf.find, buf.count
        for lit, pats in self.groups:
            idx = pos = 0
            i = find(lit)
            while i >= 0:
                idx += count(NL, pos, i)
                pos = i
                e = find(NL, i)
                if idx not in found and (
                    len(pats) == 1 or self.in_span(buf, buf.rfind(NL, 0, i) + 1, e)
                ):
                    found.add(idx)
                i = find(lit, e)
        return found
