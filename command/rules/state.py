"""What the rules remember per subject (station, incident or zone), and its stored format.

Rule state is stored per subject as compact arrays (`SubjectState.to_json`), format STATE_VERSION.
Format 1 (before STATE_VERSION existed) was a dict with one-letter keys; `from_json` reads both, and
`migrate_format_1` brings what format 1 kept to the current layout. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from command.models import Station
from command.rules.parse import Rule
from command.rules.windows import downsample

STATE_VERSION = 2
FORECAST_PREFIX = "fc:"  # SubjectState.last/hist key of a forecast kind (apart from observed kinds)


@dataclass(slots=True)
class LevelState:
    """One rule's state for one subject."""

    since: dict[str, int] = field(default_factory=dict)  # level -> time the value reached it
    held: list[str] = field(default_factory=list)  # levels taken (for elapsed, not yet cleared)
    alert: dict[str, Any] | None = None  # the open alert, as Alert fields
    # (t, value) of the rule's value over the last hour at RESOLUTION_MS, for the trend. Empty for
    # threshold rules: their value is the reading, and their trend comes from the subject's `hist`.
    vh: list = field(default_factory=list)
    # zone_warning: the warnings in force, id -> [level, until_ms or None, event, headline]
    ext: dict[str, list] = field(default_factory=dict)

    def to_json(self) -> list:
        if self.ext:
            return [self.since, self.held, self.alert, self.vh, self.ext]
        return [self.since, self.held, self.alert, self.vh]

    @classmethod
    def from_json(cls, d: Any) -> LevelState:
        if isinstance(d, dict):  # format 1
            return cls(since=dict(d.get("s") or {}), held=list(d.get("h") or []), alert=d.get("a"),
                       vh=[tuple(x) for x in d.get("v") or ()], ext=dict(d.get("x") or {}))
        return cls(since=dict(d[0]), held=list(d[1]), alert=d[2], vh=[tuple(x) for x in d[3]],
                   ext=dict(d[4]) if len(d) > 4 else {})


@dataclass(slots=True)
class SubjectState:
    """Everything the rules remember about one station or incident."""

    last: dict[str, int] = field(default_factory=dict)  # kind -> time of newest reading
    # kind -> points (t, value) or (t, value, depth sum) at RESOLUTION_MS within the longest window
    # (and the hour of a threshold rule's trend), plus the newest point at or before its start.
    # A forecast kind (FORECAST_PREFIX) holds the newest run's (valid time, value), as it came.
    hist: dict[str, list] = field(default_factory=dict)
    rules: dict[str, LevelState] = field(default_factory=dict)
    # not stored: (kind, window) -> [sum, first t, newest closed t] of the accumulation running sums
    acc: dict[tuple[str, int], list] = field(default_factory=dict, repr=False, compare=False)

    def to_json(self) -> list:
        """[STATE_VERSION, last, hist, {rule id: LevelState}]; rules with nothing to remember are left out."""
        rules = {}
        for k, ls in self.rules.items():
            if ls.since or ls.held or ls.alert is not None or ls.vh or ls.ext:
                rules[k] = ls.to_json()
        return [STATE_VERSION, self.last, self.hist, rules]

    @classmethod
    def from_json(cls, d: Any) -> SubjectState:
        if isinstance(d, dict):  # format 1: {"l": last, "w": hist, "r": {rule: {"s", "h", "a", "v", "x"}}}
            return cls(last=dict(d.get("l") or {}),
                       hist={k: [tuple(x) for x in v] for k, v in (d.get("w") or {}).items()},
                       rules={k: LevelState.from_json(v) for k, v in (d.get("r") or {}).items()})
        if not isinstance(d, list) or not d or d[0] != STATE_VERSION:
            raise ValueError(f"unknown rule state format: {str(d)[:80]}")
        return cls(last=dict(d[1]), hist={k: [tuple(x) for x in v] for k, v in d[2].items()},
                   rules={k: LevelState.from_json(v) for k, v in d[3].items()})


def migrate_format_1(s: SubjectState, rules: Iterable[Rule], st: Station | None,
                     sums_depths: Callable[[str], bool]) -> None:
    """Format 1 kept a threshold rule's readings in its own `vh` and every reading of a window:
    move those readings into `hist` (where the trend is taken from now) and bring every series to
    RESOLUTION_MS. `st` is the subject's station (None if it is not one); `sums_depths(kind)` says
    whether an accumulation rule watches the station's readings of `kind` (their depths are summed
    within a minute). In place."""
    for rule in rules:
        ls = s.rules.get(rule.id)
        if ls is None or rule.kind != "threshold" or not ls.vh:
            continue
        kind = None
        if st is not None:
            kind = st.kind if rule.station_thresholds else rule.match_kind
        if kind is not None:
            h = s.hist.setdefault(kind, [])
            first = h[0][0] if h else None
            older = [tuple(p) for p in ls.vh if first is None or p[0] < first]
            h[:0] = older
        ls.vh = []
    for kind, h in list(s.hist.items()):
        if not kind.startswith(FORECAST_PREFIX):
            s.hist[kind] = downsample(h, sums_depths(kind))
    for ls in s.rules.values():
        if ls.vh:
            ls.vh = downsample(ls.vh, False)
