"""Hits, misses, false alarms and lead times: one station at one level, then summed.

For a station and a level L, with its *events* (truth periods at L or higher) and its *warnings*
(warning periods at L or higher), and a lead window W:

- an event is a **hit** when a warning overlaps ``[start - W, end)``; its **lead time** is the event's
  start minus the start of the first such warning (negative when the warning came late);
- an event with no such warning is a **miss**;
- a warning that overlaps no event's ``[start - W, end)`` is a **false alarm**. A warning that covers
  two events makes two hits and no false alarm.

POD = hits / (hits + misses), FAR = false alarms / (hits + false alarms),
CSI = hits / (hits + misses + false alarms); a ratio with nothing to divide is None.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Any

from command.scoring.periods import Period, merge

MINUTE_MS = 60_000


@dataclass
class EventOutcome:
    period: Period
    lead_ms: int | None  # None: a miss

    @property
    def hit(self) -> bool:
        return self.lead_ms is not None


@dataclass
class WarningOutcome:
    period: Period
    false_alarm: bool


@dataclass
class LevelScore:
    hits: int = 0
    misses: int = 0
    false_alarms: int = 0
    leads_ms: list[int] = field(default_factory=list)
    events: list[EventOutcome] = field(default_factory=list)
    warnings: list[WarningOutcome] = field(default_factory=list)

    def add(self, other: LevelScore) -> None:
        """Add another station's figures (the outcomes stay with each station)."""
        self.hits += other.hits
        self.misses += other.misses
        self.false_alarms += other.false_alarms
        self.leads_ms += other.leads_ms


def score_station_level(events: Sequence[Period], warnings: Sequence[Period], lead_window_ms: int) -> LevelScore:
    """One station at one level (see the module docstring). Both lists are merged first."""
    ev, wa = merge(events), merge(warnings)
    starts = [w[0] for w in wa]
    ends = [w[1] for w in wa]  # merged periods are disjoint and sorted: their ends are sorted too
    used = [False] * len(wa)
    sc = LevelScore()
    for s, e in ev:
        lo = bisect_right(ends, s - lead_window_ms)  # first warning ending after the window opens
        hi = bisect_left(starts, e)  # warnings starting before the event ends
        if lo < hi:
            lead = s - starts[lo]
            sc.hits += 1
            sc.leads_ms.append(lead)
            sc.events.append(EventOutcome((s, e), lead))
            for i in range(lo, hi):
                used[i] = True
        else:
            sc.misses += 1
            sc.events.append(EventOutcome((s, e), None))
    for w, u in zip(wa, used, strict=True):
        sc.warnings.append(WarningOutcome(w, not u))
        sc.false_alarms += not u
    return sc


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def summarize(sc: LevelScore) -> dict[str, Any]:
    """The published figures of a score: counts, POD, FAR, CSI and lead times in minutes (None without hits)."""
    leads = [x / MINUTE_MS for x in sc.leads_ms]
    return {
        "hits": sc.hits, "misses": sc.misses, "false_alarms": sc.false_alarms,
        "pod": _ratio(sc.hits, sc.hits + sc.misses),
        "far": _ratio(sc.false_alarms, sc.hits + sc.false_alarms),
        "csi": _ratio(sc.hits, sc.hits + sc.misses + sc.false_alarms),
        "lead_median_min": round(median(leads), 1) if leads else None,
        "lead_min_min": round(min(leads), 1) if leads else None,
        "lead_max_min": round(max(leads), 1) if leads else None,
    }


@dataclass
class RuleSetScore:
    levels: dict[str, dict[str, Any]]  # level -> summary over every scored station
    stations: dict[str, dict[str, dict[str, Any]]]  # station -> level -> summary
    detail: dict[str, dict[str, LevelScore]]  # station -> level -> outcomes (for the charts)


def score_rule_set(truth: Mapping[str, Mapping[str, Sequence[Period]]],
                   warnings: Mapping[str, Mapping[str, Sequence[Period]]],
                   levels: Sequence[str], lead_window_ms: int) -> RuleSetScore:
    """Score every station of `truth` (the scored stations) at every level; a station `warnings` does
    not name was never warned. Warnings of stations outside `truth` are not scored."""
    totals = {lv: LevelScore() for lv in levels}
    detail: dict[str, dict[str, LevelScore]] = {}
    for sid in sorted(truth):
        ev = truth[sid]
        wa = warnings.get(sid, {})
        detail[sid] = {}
        for lv in levels:
            sc = score_station_level(ev.get(lv, ()), wa.get(lv, ()), lead_window_ms)
            detail[sid][lv] = sc
            totals[lv].add(sc)
    return RuleSetScore(levels={lv: summarize(totals[lv]) for lv in levels},
                        stations={sid: {lv: summarize(sc) for lv, sc in d.items()} for sid, d in detail.items()},
                        detail=detail)
