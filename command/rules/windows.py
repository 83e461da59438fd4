"""Time series kept for windows: points at RESOLUTION_MS, trimmed to the span the rules need.

A point is (t, value), or (t, value, depth sum) when the minute merged several rainfall readings;
p[-1] is always the depth the point stands for. Pure helpers, in place where they say so.
"""

from __future__ import annotations

from typing import Any

HOUR_MS = 3_600_000
# Windows keep values at this resolution: one point per clock minute (the newest reading of the
# minute), so a station's state is bounded whatever its reporting rate. A station that reports at
# most once a minute keeps every reading.
RESOLUTION_MS = 60_000


def point_time(p: Any) -> int:
    """The time of a point (a `key` for bisect)."""
    return p[0]


def add_point(pts: list, t: int, value: float, with_sum: bool) -> None:
    """Append (t, value) at RESOLUTION_MS: a second point in the same minute replaces the newest
    one, and with `with_sum` the minute's depths are added: (t, value, sum of the minute's values).
    A point of a single reading stays (t, value), so p[-1] is always the depth sum."""
    if pts:
        q = pts[-1]
        if q[0] // RESOLUTION_MS == t // RESOLUTION_MS:
            pts[-1] = (t, value, q[-1] + value) if with_sum else (t, value)
            return
    pts.append((t, value))


def trim(pts: list, cut: int) -> None:
    """Drop the points before the newest one at or before `cut` (which stays, as the reference)."""
    n = len(pts)
    if n >= 2 and pts[1][0] <= cut:
        k = 2
        while k < n and pts[k][0] <= cut:
            k += 1
        del pts[:k - 1]


def downsample(pts: Any, with_sum: bool) -> list:
    """Bring a series (e.g. one stored in format 1, every reading kept) to RESOLUTION_MS."""
    out: list = []
    for p in pts:
        if len(p) > 2 and not with_sum:
            p = (p[0], p[1])
        q = out[-1] if out else None
        if q is not None and q[0] // RESOLUTION_MS == p[0] // RESOLUTION_MS:
            out[-1] = (p[0], p[1], q[-1] + p[-1]) if with_sum else (p[0], p[1])
        else:
            out.append(tuple(p))
    return out


def window_sum(acc: dict[tuple[str, int], list], kind: str, h: list, window: int, lo: int) -> float:
    """sum(depth of the points of `h` later than `lo`), added oldest first as Python's sum() does,
    so the result is exactly that of summing the window afresh.

    A running sum of the window's closed points (all but the newest, which may still grow within
    its minute) is kept in `acc` (a subject's `SubjectState.acc`): a point that closes is added to it,
    and the window is summed again only when a point leaves it. That is at most once per point, i.e.
    once a minute however fast the readings come, so a reading costs O(1) amortised when a station
    reports faster than RESOLUTION_MS (and O(points in the window) when it reports slower, as a fresh
    sum would). The running sum is not stored: after a load it is summed afresh, to the same value."""
    n = len(h)
    key = (kind, window)
    c = acc.get(key)
    if c is not None:
        total, first, closed = c
        if first is not None and first <= lo:
            c = None  # the oldest point summed has left the window
        elif n >= 2 and h[-2][0] > closed:  # a point has closed since
            p = h[-2]
            if p[0] <= lo or (n >= 3 and h[-3][0] > closed):
                c = None
            else:
                c[0] = total + p[-1]
                c[2] = p[0]
                if first is None:
                    c[1] = p[0]
    if c is None:
        total, first = 0, None
        for i in range(n - 1):
            p = h[i]
            if p[0] > lo:
                total = total + p[-1]
                if first is None:
                    first = p[0]
        c = acc[key] = [total, first, h[-2][0] if n >= 2 else lo]
    return c[0] + h[-1][-1]
