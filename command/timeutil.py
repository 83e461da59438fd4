"""Time is epoch milliseconds (UTC) inside the system; ISO 8601 with an offset at the edges.

Rendering never fails on a stored time: `to_datetime` (and `to_iso`, and every reader built on
them) clamps an epoch ms outside what a `datetime` can hold in every zone to `MIN_MS` ..
`MAX_MS` (0001-01-02 .. 9999-12-30 UTC). Older code stored such times (``9999-12-31T23:59:59-14:00``
is year 10000 in UTC); a queue, a map layer, a CAP message or a report must still answer, and a
clamped year 9999 (or 0001) says plainly that the stored time is absurd.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DURATION_RE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|min|s|m|h|d))+")  # fullmatch, never `$`
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|min|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(text: str | int | float) -> int:
    """'15m', '1h', '2h30m', '90s', '2d' -> milliseconds. A bare number is seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return int(text * 1000)
    compact = str(text).replace(" ", "")
    if not _DURATION_RE.fullmatch(compact):
        raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 15m, 1h, 2h30m, 2d)")
    return int(sum(float(n) * _UNIT_MS[u] for n, u in _PART_RE.findall(compact)))


def parse_time(text: str) -> int:
    """ISO 8601 with an offset -> epoch ms. A time without an offset is refused: it is ambiguous."""
    dt = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return int(dt.timestamp() * 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# a day inside datetime's range at both ends, so that the time exists in every zone (offsets < 24 h)
MIN_MS = int((datetime(1, 1, 2, tzinfo=UTC) - _EPOCH) / timedelta(milliseconds=1))
MAX_MS = int((datetime(9999, 12, 30, 23, 59, 59, 999000, tzinfo=UTC) - _EPOCH) / timedelta(milliseconds=1))


def _zone(tz: str | None) -> tzinfo:
    if not tz:
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):  # a stored name this machine does not know: UTC, said as +00:00
        return UTC


def clamp_ms(ms: int | float) -> int | float:
    """`ms` within MIN_MS .. MAX_MS (NaN, which is no time at all, reads as MIN_MS)."""
    if isinstance(ms, float) and math.isnan(ms):
        return MIN_MS
    return min(max(ms, MIN_MS), MAX_MS)


def to_datetime(ms: int | float, tz: str | None = None) -> datetime:
    """Epoch ms as an aware datetime in `tz` (an IANA name; UTC when None or unknown), clamped to
    MIN_MS .. MAX_MS so that it never raises (see the module docstring)."""
    return (_EPOCH + timedelta(milliseconds=clamp_ms(ms))).astimezone(_zone(tz))


@overload
def to_iso(ms: int | float, tz: str | None = None) -> str: ...
@overload
def to_iso(ms: None, tz: str | None = None) -> None: ...
@overload
def to_iso(ms: int | float | None, tz: str | None = None) -> str | None: ...
def to_iso(ms: int | float | None, tz: str | None = None) -> str | None:
    """Epoch ms as ISO 8601 with the offset of `tz` (UTC when None); None for None. Never raises."""
    if ms is None:
        return None
    return to_datetime(ms, tz).isoformat()


def now_ms() -> int:
    """The wall clock. Only the edges (live feeds, the live ticker) call this; rules take `now`."""
    return int(datetime.now(tz=UTC).timestamp() * 1000)


def humanize_ms(ms: int) -> str:
    """90 min -> '1 h 30 min'."""
    minutes = round(ms / 60_000)
    h, m = divmod(abs(minutes), 60)
    if h and m:
        return f"{h} h {m} min"
    if h:
        return f"{h} h"
    return f"{m} min"
