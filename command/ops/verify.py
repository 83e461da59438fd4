"""Did the work work? The pure decision on a completed task (docs/dispatch.md, "Checking that the work
worked").

After a task on a station's alert is marked completed, the station is watched for `within_ms`
(the rule's `verify_within`, default 1 h): if its alert escalates, or the value rises by more than
`rise` (the rule's `verify_rise`, default: a tenth of the smallest gap between the station's levels)
above its value at completion, the task is reopened with the reason; if the value falls back below
the lowest level within the window, it is verified; otherwise it is still being watched, and once
the window has passed with neither it is left as completed ("unverified").

The engine calls this on every batch with the readings and alert events it has just seen (see
`command/engine/verification.py`, the Redis edge); nothing here reads a clock or Redis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

DEFAULT_VERIFY_MS = 3_600_000
VERIFIER = "verification"  # who a task's reopening or verification is recorded as
REOPENED, VERIFIED, WATCHING, UNVERIFIED = "reopened", "verified", "watching", "unverified"


@dataclass(frozen=True)
class Verdict:
    outcome: str  # REOPENED, VERIFIED, WATCHING, UNVERIFIED (the window ended)
    reason: str = ""
    at: int | None = None  # the time of the reading or alert event that decided it (data time, ms)


def _span(ms: int) -> str:
    return f"{max(0, ms) // 60_000} min"


def level_bounds(levels: Sequence[str], station_thresholds: Mapping[str, float],
                 rule_bounds: Mapping[str, float] | None) -> list[float]:
    """The bounds the value is judged against, ascending: the station's own thresholds when it has
    any (a rate-of-rise alert is still about the water reaching the station's levels), else the rule's."""
    own = [float(station_thresholds[lv]) for lv in levels if lv in station_thresholds]
    if own:
        return sorted(own)
    return sorted(float(rule_bounds[lv]) for lv in levels if rule_bounds and lv in rule_bounds)


def default_rise(thresholds: Sequence[float]) -> float:
    """A tenth of the smallest gap between the levels (one level only: a tenth of its bound)."""
    gaps = [b - a for a, b in zip(thresholds, thresholds[1:], strict=False) if b > a]
    return (min(gaps) if gaps else (abs(thresholds[0]) if thresholds else 1.0) or 1.0) / 10


def verify_completion(*, station: str, completed_at: int, level_rank: int, thresholds: Sequence[float],
                      readings: Sequence[tuple[int, float]], alert_levels: Sequence[tuple[int, int]], now: int,
                      within_ms: int | None = None, rise: float | None = None, unit: str = "m") -> Verdict:
    """`readings`: (t, value) of the station (the one at or before completion is the baseline);
    `alert_levels`: (t, level rank) of its alert's events; `thresholds`: its levels' bounds,
    ascending; `level_rank`: the alert's rank when completed; `now`: the namespace clock."""
    end = completed_at + (within_ms if within_ms is not None else DEFAULT_VERIFY_MS)
    if rise is None:
        rise = default_rise(thresholds)
    last = min(now, end)
    after = [(t, v) for t, v in readings if completed_at <= t <= last]
    base = next((v for t, v in sorted(readings, reverse=True) if t <= completed_at),
                after[0][1] if after else None)
    events = sorted([(t, 0, float(lv)) for t, lv in alert_levels if completed_at < t <= last]
                    + [(t, 1, v) for t, v in after])
    for t, kind, v in events:
        if kind == 0 and v > level_rank:
            return Verdict(REOPENED, f"the alert on {station} escalated {_span(t - completed_at)} after completion", t)
        if kind == 1 and base is not None and v - base > rise:
            return Verdict(REOPENED, f"sensors disagree: {station} rose {v - base:.2f} {unit} in "
                                     f"{_span(t - completed_at)} after completion", t)
        if kind == 1 and thresholds and v < thresholds[0]:
            return Verdict(VERIFIED, f"{station} fell below its levels {_span(t - completed_at)} after completion", t)
    return Verdict(WATCHING if now < end else UNVERIFIED)
