"""What a callback receives is whatever the request says: a crafted request can put any JSON value in
any input or state (a number where a list is expected, a string for a number, a lone surrogate in a
text). These read one value as the type the callback needs, or say it is not one, so a callback
answers a wrong type with a message or nothing, never with a 500."""

from __future__ import annotations

import math
from typing import Any

NOT = object()  # "not a value of that type"


def text(v: Any, max_len: int = 10_000) -> str | object:
    """A string (None: ""), without lone surrogates, at most `max_len` characters; else NOT."""
    if v is None:
        return ""
    if not isinstance(v, str) or len(v) > max_len:
        return NOT
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not text, and Redis cannot store it as UTF-8
        return NOT
    return v


def number(v: Any, lo: float = -math.inf, hi: float = math.inf) -> float | None | object:
    """A finite number in [lo, hi] (a numeric string is taken, a boolean is not; None or "": None); else NOT."""
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return NOT
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            return NOT
    if not isinstance(v, int | float):
        return NOT
    try:
        f = float(v)
    except OverflowError:  # an int too large for a float
        return NOT
    return f if math.isfinite(f) and lo <= f <= hi else NOT


def one_of(v: Any, options: tuple | list | set | frozenset) -> Any:
    """`v` when it is one of `options` (hashable and equal), else NOT."""
    try:
        return v if isinstance(v, str | int) and not isinstance(v, bool) and v in options else NOT
    except TypeError:
        return NOT


def str_list(v: Any, max_items: int = 1000, max_len: int = 200) -> list[str] | object:
    """A list of strings (None: []), else NOT."""
    if v is None:
        return []
    if not isinstance(v, list) or len(v) > max_items:
        return NOT
    out = []
    for x in v:
        s = text(x, max_len)
        if s is NOT:
            return NOT
        out.append(s)
    return out


def dict_of(v: Any, *keys: str) -> dict[str, Any] | object:
    """A dict with (at least) these keys, else NOT."""
    return v if isinstance(v, dict) and all(k in v for k in keys) else NOT


def as_list(v: Any, n: int) -> list:
    """`v` as a list of exactly `n` items (padded with None, cut), whatever was sent."""
    items = v if isinstance(v, list) else []
    return (items + [None] * n)[:n]


def lang_of(v: Any) -> str:
    """The page's language: one we have, else English."""
    from command.i18n import LANGS

    return v if isinstance(v, str) and v in LANGS else "en"


def clicked(data: Any, kind: str) -> dict | None:
    """The id of the button a relayed click names (`relayClick`, assets/clicks.js: `{"id": ..., "n": ...}`
    in a store), if it is a `kind` button; else None (the store's value comes from the browser)."""
    button = data.get("id") if isinstance(data, dict) else None
    return button if isinstance(button, dict) and button.get("type") == kind else None
