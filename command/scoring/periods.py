"""Periods of time: half-open ``[start, end)`` in epoch milliseconds, merged into maximal periods."""

from __future__ import annotations

from collections.abc import Iterable

Period = tuple[int, int]


def merge(periods: Iterable[Period]) -> list[Period]:
    """The maximal periods covered by `periods`, in time order. Overlapping or touching periods (one
    ends when the next begins) become one; empty ones (end <= start) are dropped."""
    out: list[list[int]] = []
    for s, e in sorted(p for p in periods if p[1] > p[0]):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1][1] = e
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def overlaps(a: Period, b: Period) -> bool:
    """Whether two half-open periods share some time (touching is not overlapping)."""
    return a[0] < b[1] and b[0] < a[1]
