"""Redis glob patterns, matched in Python exactly as Redis matches them.

Redis's ``stringmatchlen`` works on bytes: ``?`` and a bracket each consume one byte, so
a non-ASCII character counts as two or more. The tokenizer below follows its parse rules
(``\\`` escapes anywhere, ``[^...]`` negation, ``a-z`` ranges in either order). Two
constructs that Redis accepts but silently reinterprets, an unclosed ``[`` and a
trailing lone ``\\``, are refused instead: they are almost always typing mistakes. So is
a range with a non-ASCII end, whose meaning depends on the server's CPU.

Matching splits the pattern at its stars into fixed-width segments and places each
middle segment at its leftmost fit. That is exact for glob semantics and takes
O(len(key) * len(pattern)) in the worst case, where a naive translation to one regular
expression backtracks exponentially on patterns such as ``*a*a*a*a*b``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from .exceptions import CacheTypeError, InvalidPatternError

__all__ = ["compile_glob", "escape_glob", "is_literal", "validate_pattern"]

_STAR = object()
_SPECIAL = frozenset("*?[]\\")


def validate_pattern(pattern: object, *, max_length: int = 1024) -> str:
    """Return ``pattern`` if it is a usable glob, else raise a typed error."""
    if not isinstance(pattern, str):
        raise CacheTypeError(f"pattern must be str, not {type(pattern).__name__}")
    if not pattern:
        raise InvalidPatternError("pattern must not be empty")
    if len(pattern) > max_length:
        raise InvalidPatternError(
            f"pattern is {len(pattern)} characters long; the maximum is {max_length}"
        )
    if not pattern.isprintable() or " " in pattern:
        raise InvalidPatternError(
            f"pattern {pattern!r} contains whitespace or unprintable characters"
        )
    _compile(pattern)
    return pattern


def escape_glob(text: str) -> str:
    """Escape ``text`` so that, as a glob, it matches only itself."""
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


def is_literal(pattern: str) -> bool:
    """Whether ``pattern`` has no unescaped glob metacharacter (it names one key)."""
    return not any(c in _SPECIAL for c in pattern)


def compile_glob(pattern: str) -> Callable[[str], bool]:
    """Return a predicate telling whether a key matches ``pattern`` under Redis rules.

    The pattern must already have passed `validate_pattern()`.
    """
    return _compile(pattern)


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> Callable[[str], bool]:
    tokens = _tokenize(pattern.encode())
    segments: list[list[bytes]] = [[]]
    for token in tokens:
        if token is _STAR:
            segments.append([])
        else:
            assert isinstance(token, bytes)
            segments[-1].append(token)
    regexes = [re.compile(b"".join(seg), re.DOTALL) for seg in segments]
    widths = [len(seg) for seg in segments]

    if len(segments) == 1:
        only = regexes[0]

        def match_exact(key: str) -> bool:
            return only.fullmatch(key.encode()) is not None

        return match_exact

    first, last = regexes[0], regexes[-1]
    first_width, last_width = widths[0], widths[-1]
    middles = regexes[1:-1]

    def match_starred(key: str) -> bool:
        data = key.encode()
        end = len(data) - last_width
        if end < first_width:
            return False
        if first_width and first.match(data) is None:
            return False
        pos = first_width
        for middle in middles:
            found = middle.search(data, pos, end)
            if found is None:
                return False
            pos = found.end()
        return not last_width or last.fullmatch(data, end) is not None

    return match_starred


def _tokenize(pattern: bytes) -> list[object]:
    """Turn a pattern into ``_STAR`` markers and one-byte regular expressions."""
    tokens: list[object] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # '*'
            if not tokens or tokens[-1] is not _STAR:
                tokens.append(_STAR)
            i += 1
        elif c == 0x3F:  # '?'
            tokens.append(b".")
            i += 1
        elif c == 0x5B:  # '['
            token, i = _bracket(pattern, i + 1)
            tokens.append(token)
        elif c == 0x5C:  # '\\'
            if i + 1 >= n:
                raise InvalidPatternError(
                    "pattern ends with a lone '\\'; escape it as '\\\\' to match a backslash"
                )
            tokens.append(_byte(pattern[i + 1]))
            i += 2
        else:
            tokens.append(_byte(c))
            i += 1
    return tokens


def _bracket(pattern: bytes, i: int) -> tuple[bytes, int]:
    """Parse a bracket whose '[' precedes index ``i``; return its regex and the next index."""
    n = len(pattern)
    negate = i < n and pattern[i] == 0x5E  # '^'
    if negate:
        i += 1
    members: list[bytes] = []
    while True:
        if i >= n:
            raise InvalidPatternError("pattern has a '[' without its closing ']'")
        c = pattern[i]
        if c == 0x5C and n - i >= 2:  # '\\' escapes the next byte
            members.append(_class_byte(pattern[i + 1]))
            i += 2
        elif c == 0x5D:  # ']'
            i += 1
            break
        elif n - i >= 3 and pattern[i + 1] == 0x2D:  # 'a-z', either order, as Redis
            if c > 0x7F or pattern[i + 2] > 0x7F:
                # Redis compares range ends as C chars, signed on x86 and unsigned on
                # ARM: a non-ASCII range means different things on different servers.
                raise InvalidPatternError("a range in '[...]' must have ASCII ends")
            low, high = sorted((c, pattern[i + 2]))
            members.append(_class_byte(low) + b"-" + _class_byte(high))
            i += 3
        else:
            members.append(_class_byte(c))
            i += 1
    if not members:
        # '[]' matches nothing and '[^]' any byte, as in Redis.
        return (b"." if negate else b"(?!)"), i
    return b"[" + (b"^" if negate else b"") + b"".join(members) + b"]", i


def _byte(value: int) -> bytes:
    return re.escape(bytes((value,)))


def _class_byte(value: int) -> bytes:
    # A hex escape is unambiguous inside a character class, whatever the byte.
    return b"\\x%02x" % value
