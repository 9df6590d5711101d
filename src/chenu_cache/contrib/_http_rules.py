"""The HTTP rules of ``cache_response`` that need no request: the key of a path and
query, weak ETags and ``If-None-Match`` (RFC 9110), ``Cache-Control`` directives, and
the checks of the decorator's options. Pure functions, tested through the decorator.
"""

from __future__ import annotations

import hashlib
import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from chenu_cache import CacheTypeError, InvalidTTLError

__all__ = [
    "MAX_PART",
    "cache_control_says",
    "check_templates",
    "digest",
    "none_match",
    "path_part",
    "query_part",
    "response_key",
    "seconds",
    "weak_etag",
]

_ETAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')
_PATH_SAFE = "/:@!$&'()+,;=-._~"  # RFC 3986 pchar minus '*' (a glob character)
MAX_PART = 400
"""Longest path (or custom key) kept as it is in a key; longer ones become a digest."""
_MAX_QUERY = 400


# -- keys ------------------------------------------------------------------------------


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def path_part(path: str) -> str:
    quoted = quote(path, safe=_PATH_SAFE)
    if not quoted.startswith("/"):
        quoted = "/" + quoted
    if len(quoted) > MAX_PART:
        quoted = "/sha256:" + digest(quoted)
    return quoted


def query_part(pairs: Iterable[tuple[str, str]]) -> str:
    # Sorted by name only: `?b=1&a=2` is `?a=2&b=1`, but repeated names keep their
    # order (`?t=x&t=y` may mean a list, whose order the endpoint sees).
    ordered = sorted(pairs, key=lambda pair: pair[0])
    text = urlencode(ordered, quote_via=quote, safe="")
    if len(text) > _MAX_QUERY:
        text = "sha256:" + digest(text)
    return text


def _pairs(
    query: str | Mapping[str, Any] | Sequence[tuple[str, Any]] | None,
) -> list[tuple[str, str]]:
    if query is None:
        return []
    if isinstance(query, str):
        return parse_qsl(query.lstrip("?"), keep_blank_values=True)
    items = query.items() if isinstance(query, Mapping) else query
    found: list[tuple[str, str]] = []
    for name, value in items:
        if isinstance(value, (list, tuple)):
            found.extend((str(name), str(v)) for v in value)
        else:
            found.append((str(name), str(value)))
    return found


def response_key(
    path: str,
    query: str | Mapping[str, Any] | Sequence[tuple[str, Any]] | None = None,
) -> str:
    """The logical key (without namespace) under which ``cache_response`` stores the
    response to ``GET path?query`` (before any ``vary=`` suffix).

    ``query`` is a query string, a mapping (a list value is a repeated parameter) or a
    list of pairs; parameter order does not matter.
    """
    if not isinstance(path, str) or not path:
        raise CacheTypeError("path must be a non-empty str such as '/users/42'")
    return f"{path_part(path)}?{query_part(_pairs(query))}"


# -- options and validators ----------------------------------------------------


def seconds(name: str, value: object, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise CacheTypeError(f"{name} must be seconds or a timedelta, not {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidTTLError(f"{name} must be a non-negative, finite number of seconds")
    return seconds


def check_templates(templates: Iterable[str], parameters: Iterable[str]) -> tuple[str, ...]:
    """The decorator's template rules: every field names a parameter of the endpoint."""
    if isinstance(templates, str) or not isinstance(templates, Iterable):
        raise CacheTypeError("tags= takes a list of templates, not a string")
    known = set(parameters)
    checked = []
    for template in templates:
        if not isinstance(template, str):
            raise CacheTypeError(f"a tag template must be a str, not {type(template).__name__}")
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as exc:
            raise CacheTypeError(f"tag template {template!r}: {exc}") from None
        for field in fields:
            name = field.split(".", 1)[0].split("[", 1)[0]
            if name not in known:
                raise CacheTypeError(
                    f"tag template {template!r} names {name!r}, which is not a parameter "
                    f"of the endpoint (parameters: {', '.join(sorted(known)) or 'none'})"
                )
        checked.append(template)
    return tuple(checked)


def weak_etag(body: bytes) -> str:
    return 'W/"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def cache_control_says(value: str, *directives: str) -> bool:
    found = {part.strip().split("=", 1)[0].strip().lower() for part in value.split(",")}
    return any(d in found for d in directives)


# -- conditional requests --------------------------------------------------------------


def none_match(header: str, etag: str) -> bool:
    """RFC 9110 §13.1.2: whether ``If-None-Match: header`` matches ``etag`` (weak
    comparison). A malformed header matches nothing."""
    if header.strip() == "*":
        return True
    opaque = etag[2:] if etag.startswith("W/") else etag
    at = 0
    while at < len(header):
        found = _ETAG.match(header, at)
        if found is None:
            return False
        if '"' + found.group(2) + '"' == opaque:
            return True
        at = found.end()
    return False
