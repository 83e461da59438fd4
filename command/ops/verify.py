"""Did the work work? The pure decision on a completed task (not yet wired into the engine or the
timer sweep, and no rule keys yet: `verify_within` and `verify_rise` are parameters here).

After a task on a station's alert is marked completed, the station is watched for `within_ms`
(default 1 h): if its alert escalates, or the value rises by more than `rise` (default: a tenth of
the gap between the alert's levels), the task is reopened with the reason; if the value falls back
below the lowest level within the window, it is verified; otherwise it is still being watched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_VERIFY_MS = 3_600_000


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "reopened", "verified", "watching", "unverified" (the window ended)
    reason: str = ""


def _span(ms: int) -> str:
    return f"{max(0, ms) // 60_000} min"


def verify_completion(*, station: str, completed_at: int, level_rank: int, thresholds: Sequence[float],
                      readings: Sequence[tuple[int, float]], alert_levels: Sequence[tuple[int, int]], now: int,
                      within_ms: int = DEFAULT_VERIFY_MS, rise: float | None = None, unit: str = "m") -> Verdict:
    """`readings`: (t, value) of the station; `alert_levels`: (t, level rank) of its alert events;
    `thresholds`: its levels' bounds, ascending; `level_rank`: the alert's rank when completed."""
    end = completed_at + within_ms
    if rise is None:
        gaps = [b - a for a, b in zip(thresholds, thresholds[1:], strict=False)]
        rise = (min(gaps) if gaps else (thresholds[0] if thresholds else 1.0)) / 10
    after = [(t, v) for t, v in readings if completed_at <= t <= min(now, end)]
    base = next((v for t, v in reversed(readings) if t <= completed_at), after[0][1] if after else None)
    events = sorted([(t, "alert", float(lv)) for t, lv in alert_levels if completed_at < t <= min(now, end)]
                    + [(t, "reading", v) for t, v in after])
    for t, kind, v in events:
        if kind == "alert" and v > level_rank:
            return Verdict("reopened", f"the alert on {station} escalated {_span(t - completed_at)} after completion")
        if kind == "reading" and base is not None and v - base > rise:
            return Verdict("reopened", f"sensors disagree: {station} rose {v - base:.2f} {unit} in "
                                       f"{_span(t - completed_at)} after completion")
        if kind == "reading" and thresholds and v < thresholds[0]:
            return Verdict("verified", f"{station} fell below its levels {_span(t - completed_at)} after completion")
    return Verdict("watching" if now < end else "unverified")
