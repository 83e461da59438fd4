"""Time is epoch milliseconds (UTC) inside the system; ISO 8601 with an offset at the edges."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

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


def to_iso(ms: int | None, tz: str | None = None) -> str | None:
    if ms is None:
        return None
    zone = ZoneInfo(tz) if tz else UTC
    return datetime.fromtimestamp(ms / 1000, tz=zone).isoformat()


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
