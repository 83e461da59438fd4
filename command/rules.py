"""The rule vocabulary: parsing `rules.yaml` and pure evaluation.

Nothing here does I/O or reads the wall clock: every function takes the time of the input it is
evaluating (a reading's time, a clock tick's time). `ShardEvaluator` is a deterministic state
machine over one shard's inputs; its state can be exported and loaded, which is how an engine
resumes a shard another engine (or a crashed one) left off.

Level semantics, shared by threshold, rate_of_rise and accumulation rules:
- a value *reaches* a level when it is >= the level's bound;
- it *takes* the level once it has stayed there for `for` (pending until then);
- a level that is held clears only when the value falls below `bound - clear_margin` (hysteresis);
- the alert's level is the highest level held; the alert resolves when none is held.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from command.models import ExternalWarning, Incident, Reading, Station, Zone
from command.timeutil import humanize_ms, parse_duration

RULE_KINDS = ("threshold", "rate_of_rise", "accumulation", "stale", "zone_incident",
              "forecast_accumulation", "zone_warning")
# CAP 1.2 severities, lowest first; `zone_warning` maps the top three onto the top three levels.
CAP_SEVERITIES = ("Unknown", "Minor", "Moderate", "Severe", "Extreme")
_SEVERITY_FROM_TOP = {"Extreme": 1, "Severe": 2, "Moderate": 3}
# a warning in one of these CAP statuses can open an alert; Test, System and Draft never do
WARNING_STATUSES = frozenset({"Actual", "Exercise"})
FORECAST_PREFIX = "fc:"  # SubjectState.last/hist key of a forecast kind (apart from observed kinds)
HOUR_MS = 3_600_000
TREND_MIN_SPAN_MS = 15 * 60_000  # a trend over less than this is noise, not a trend


class RuleError(ValueError):
    """A rules file that cannot be used. The message names the file and the rule."""


# ------------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Recommend:
    type: str
    count: int = 1


@dataclass(slots=True)
class Rule:
    id: str
    kind: str
    levels: tuple[str, ...]  # the rule set's ordered levels, lowest first
    match_kind: str | None = None
    match_stations: frozenset[str] | None = None
    match_zone: str | None = None
    # Level -> bound in SI; None with `station_thresholds` means "each station's own".
    bounds: dict[str, float] | None = None
    station_thresholds: bool = False
    for_ms: int = 0
    clear_margin: float = 0.0
    window_ms: int = 0
    after_ms: int = 0
    level: str | None = None  # stale and zone_incident: the single level they raise
    zone_risk: frozenset[str] | None = None
    zone_ids: frozenset[str] | None = None
    categories: frozenset[str] | None = None
    events: frozenset[str] | None = None  # zone_warning: warning event names, lower case
    min_severity: str | None = None  # zone_warning: the lowest CAP severity that counts
    recommend: tuple[Recommend, ...] = ()
    description: str = ""

    def matches_station(self, st: Station, kind: str | None = None) -> bool:
        """Does this rule watch `st`'s readings of `kind` (the station's own kind by default)?"""
        if self.kind in ("zone_incident", "zone_warning"):
            return False
        if self.match_kind and (kind or st.kind) != self.match_kind:
            return False
        if self.match_stations is not None and st.id not in self.match_stations:
            return False
        if self.match_zone is not None and st.zone != self.match_zone:
            return False
        return True

    def bounds_for(self, st: Station) -> dict[str, float]:
        """Ordered (lowest level first) bounds that apply to this station."""
        src = st.thresholds if self.station_thresholds else (self.bounds or {})
        return {lv: float(src[lv]) for lv in self.levels if lv in src}

    def matches_zone(self, zone: Zone | None) -> bool:
        if zone is None:
            return False
        if self.zone_ids is not None and zone.id not in self.zone_ids:
            return False
        if self.zone_risk is not None and (zone.risk or "") not in self.zone_risk:
            return False
        return True


@dataclass(slots=True)
class RuleSet:
    levels: tuple[str, ...]
    rules: list[Rule]

    def level_rank(self, level: str | None) -> int:
        return -1 if level is None else self.levels.index(level)

    def by_id(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)


def _as_set(value: Any, what: str, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset([value])
    if isinstance(value, list | tuple) and all(isinstance(v, str | int) for v in value):
        return frozenset(str(v) for v in value)
    raise RuleError(f"{where}: `{what}` must be a name or a list of names, not {value!r}")


def parse_rules(data: Any, source: str = "rules.yaml") -> RuleSet:
    """Validate a loaded rules document. Every error names the file and the rule."""
    if not isinstance(data, dict):
        raise RuleError(f"{source}: expected a mapping with `levels` and `rules`, got {type(data).__name__}")
    levels = data.get("levels", ["yellow", "orange", "red"])
    if not isinstance(levels, list) or not levels or not all(isinstance(lv, str) for lv in levels):
        raise RuleError(f"{source}: `levels` must be a non-empty list of names, lowest first")
    if len(set(levels)) != len(levels):
        raise RuleError(f"{source}: `levels` has a duplicate name")
    raw_rules = data.get("rules")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RuleError(f"{source}: `rules` must be a non-empty list")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules, 1):
        where = f"{source}: rule #{i}"
        if not isinstance(raw, dict):
            raise RuleError(f"{where}: expected a mapping, got {raw!r}")
        rid = raw.get("id")
        if not isinstance(rid, str) or not rid:
            raise RuleError(f"{where}: missing `id`")
        where = f"{source}: rule {rid!r}"
        if rid in seen:
            raise RuleError(f"{where}: duplicate id")
        seen.add(rid)
        rules.append(_parse_rule(raw, rid, tuple(levels), where))
    return RuleSet(levels=tuple(levels), rules=rules)


def _duration(raw: dict, key: str, where: str, default: int | None = None) -> int:
    if key not in raw:
        if default is None:
            raise RuleError(f"{where}: missing `{key}` (a duration like 15m or 1h)")
        return default
    try:
        ms = parse_duration(raw[key])
    except ValueError as exc:
        raise RuleError(f"{where}: `{key}`: {exc}") from None
    if ms < 0:
        raise RuleError(f"{where}: `{key}` must not be negative")
    return ms


def _level(raw: dict, levels: tuple[str, ...], where: str) -> str:
    lv = raw.get("level")
    if lv not in levels:
        raise RuleError(f"{where}: `level` must be one of {list(levels)}, got {lv!r}")
    return lv


_COMMON_KEYS = {"id", "kind", "match", "recommend", "description"}
_KIND_KEYS = {
    "threshold": {"above", "for", "clear_margin"},
    "rate_of_rise": {"above", "for", "clear_margin", "window"},
    "accumulation": {"above", "for", "clear_margin", "window"},
    "stale": {"after", "level"},
    "zone_incident": {"zones", "categories", "level"},
    "forecast_accumulation": {"above", "for", "clear_margin", "window"},
    "zone_warning": {"zones", "events", "min_severity", "level"},
}
_MATCH_KEYS = {"kind", "stations", "zone"}


def _parse_rule(raw: dict, rid: str, levels: tuple[str, ...], where: str) -> Rule:
    kind = raw.get("kind")
    if kind not in RULE_KINDS:
        raise RuleError(f"{where}: unknown kind {kind!r} (expected one of {', '.join(RULE_KINDS)})")
    # a misspelt key would silently change what a rule does: refuse it
    unknown = sorted(set(raw) - _COMMON_KEYS - _KIND_KEYS[kind])
    if unknown:
        raise RuleError(f"{where}: unknown key(s) {', '.join(unknown)} for a {kind} rule "
                        f"(allowed: {', '.join(sorted(_COMMON_KEYS | _KIND_KEYS[kind]))})")
    if isinstance(raw.get("match"), dict) and set(raw["match"]) - _MATCH_KEYS:
        raise RuleError(f"{where}: unknown `match` key(s) {', '.join(sorted(set(raw['match']) - _MATCH_KEYS))} "
                        f"(allowed: {', '.join(sorted(_MATCH_KEYS))})")
    rule = Rule(id=rid, kind=kind, levels=levels, description=str(raw.get("description", "")))
    match = raw.get("match") or {}
    if not isinstance(match, dict):
        raise RuleError(f"{where}: `match` must be a mapping like {{kind: water_level}}")
    rule.match_kind = match.get("kind")
    if kind == "forecast_accumulation" and rule.match_kind is None:
        rule.match_kind = "rainfall"  # summing a wind forecast means nothing: rainfall unless told
    rule.match_stations = _as_set(match.get("stations"), "match.stations", where)
    rule.match_zone = match.get("zone")

    if kind in ("threshold", "rate_of_rise", "accumulation", "forecast_accumulation"):
        above = raw.get("above")
        if above == "thresholds":
            if kind != "threshold":
                raise RuleError(f"{where}: `above: thresholds` is only for threshold rules; give a map of level to bound")
            rule.station_thresholds = True
        elif isinstance(above, dict) and above:
            bounds: dict[str, float] = {}
            for lv, b in above.items():
                if lv not in levels:
                    raise RuleError(f"{where}: `above` names level {lv!r}, not one of {list(levels)}")
                if isinstance(b, bool) or not isinstance(b, int | float):
                    raise RuleError(f"{where}: bound for {lv!r} must be a number, got {b!r}")
                bounds[lv] = float(b)
            ordered = [bounds[lv] for lv in levels if lv in bounds]
            if ordered != sorted(ordered):
                raise RuleError(f"{where}: bounds must rise with the level ({bounds})")
            rule.bounds = bounds
        else:
            raise RuleError(f"{where}: `above` must be `thresholds` or a map like {{yellow: 2.0, red: 3.0}}")
        rule.for_ms = _duration(raw, "for", where, default=0)
        margin = raw.get("clear_margin", 0)
        if isinstance(margin, bool) or not isinstance(margin, int | float) or margin < 0:
            raise RuleError(f"{where}: `clear_margin` must be a number >= 0, got {margin!r}")
        rule.clear_margin = float(margin)
        if kind != "threshold":
            rule.window_ms = _duration(raw, "window", where)
            if rule.window_ms <= 0:
                raise RuleError(f"{where}: `window` must be positive")
    elif kind == "stale":
        rule.after_ms = _duration(raw, "after", where)
        if rule.after_ms <= 0:
            raise RuleError(f"{where}: `after` must be positive")
        rule.level = _level(raw, levels, where)
    elif kind == "zone_incident":
        zones = raw.get("zones")
        if isinstance(zones, dict):
            rule.zone_risk = _as_set(zones.get("risk"), "zones.risk", where)
            rule.zone_ids = _as_set(zones.get("ids"), "zones.ids", where)
        elif zones is not None:
            rule.zone_ids = _as_set(zones, "zones", where)
        rule.categories = _as_set(raw.get("categories"), "categories", where)
        rule.level = _level(raw, levels, where)
    elif kind == "zone_warning":
        zones = raw.get("zones")
        if isinstance(zones, dict):
            if set(zones) - {"risk", "ids"}:
                raise RuleError(f"{where}: `zones` takes `risk` and/or `ids`, got {sorted(zones)}")
            rule.zone_risk = _as_set(zones.get("risk"), "zones.risk", where)
            rule.zone_ids = _as_set(zones.get("ids"), "zones.ids", where)
        elif zones is not None:
            rule.zone_ids = _as_set(zones, "zones", where)
        events = _as_set(raw.get("events"), "events", where)
        rule.events = None if events is None else frozenset(e.strip().lower() for e in events)
        sev = raw.get("min_severity")
        if sev is not None:
            if sev not in CAP_SEVERITIES[1:]:
                raise RuleError(f"{where}: `min_severity` must be one of {', '.join(CAP_SEVERITIES[1:])}, got {sev!r}")
            rule.min_severity = sev
        lv = raw.get("level", "severity")
        if lv != "severity":
            rule.level = _level(raw, levels, where)

    recs = raw.get("recommend") or []
    if not isinstance(recs, list):
        raise RuleError(f"{where}: `recommend` must be a list like [{{type: pump, count: 2}}]")
    parsed: list[Recommend] = []
    for rec in recs:
        if not isinstance(rec, dict) or not isinstance(rec.get("type"), str):
            raise RuleError(f"{where}: each `recommend` item needs a `type`, got {rec!r}")
        count = rec.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise RuleError(f"{where}: `count` must be a whole number >= 1, got {count!r}")
        parsed.append(Recommend(rec["type"], count))
    rule.recommend = tuple(parsed)
    return rule


# ------------------------------------------------------------------------------------------------
# Evaluation state
# ------------------------------------------------------------------------------------------------
def fingerprint(rule_id: str, subject: str, opened_at: int) -> str:
    """Deterministic alert identity: the same data always yields the same fingerprint."""
    return hashlib.sha1(f"{rule_id}\x1f{subject}\x1f{opened_at}".encode()).hexdigest()[:16]


# Rule state is stored per subject as compact arrays (`SubjectState.to_json`). Format 1 (before
# STATE_VERSION existed) was a dict with one-letter keys; `from_json` reads both, and
# `ShardEvaluator.load` migrates format 1 (see `_migrate`).
STATE_VERSION = 2
# Windows keep values at this resolution: one point per clock minute (the newest reading of the
# minute), so a station's state is bounded whatever its reporting rate. A station that reports at
# most once a minute keeps every reading.
RESOLUTION_MS = 60_000


def _t(p: Any) -> int:
    return p[0]


def _add_point(pts: list, t: int, value: float, with_sum: bool) -> None:
    """Append (t, value) at RESOLUTION_MS: a second point in the same minute replaces the newest
    one, and with `with_sum` the minute's depths are added: (t, value, sum of the minute's values).
    A point of a single reading stays (t, value), so p[-1] is always the depth sum."""
    if pts:
        q = pts[-1]
        if q[0] // RESOLUTION_MS == t // RESOLUTION_MS:
            pts[-1] = (t, value, q[-1] + value) if with_sum else (t, value)
            return
    pts.append((t, value))


def _trim(pts: list, cut: int) -> None:
    """Drop the points before the newest one at or before `cut` (which stays, as the reference)."""
    n = len(pts)
    if n >= 2 and pts[1][0] <= cut:
        k = 2
        while k < n and pts[k][0] <= cut:
            k += 1
        del pts[:k - 1]


def _downsample(pts: Any, with_sum: bool) -> list:
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


@dataclass(slots=True)
class AlertChange:
    """A lifecycle event: open, raise, lower or resolve. `alert` is a snapshot of the alert just after
    the change (the live dict moves on as later readings of the same batch arrive)."""

    event: str
    alert: dict[str, Any]
    rule: Rule


def step_levels(st: LevelState, bounds: dict[str, float], value: float, t: int, for_ms: int,
                margin: float) -> None:
    """Advance pending/held levels for one value. Pure, in place."""
    since, held = st.since, st.held
    for lv, b in bounds.items():
        if lv in held:
            if value < b - margin:
                held.remove(lv)
                since.pop(lv, None)
        elif value >= b:
            start = since.setdefault(lv, t)
            if t - start >= for_ms:
                held.append(lv)
        else:
            since.pop(lv, None)


def _trend(vh: list, t: int) -> float | None:
    """Rate of change per hour over the last hour (or the span there is, if at least 15 minutes).

    `vh` holds (t, value, ...) points, oldest first; the reference is the newest point at or before
    t - 1 h, or the oldest point when there is none."""
    if len(vh) < 2:
        return None
    last = vh[-1]
    t1, v1 = last[0], last[1]
    cut = t - HOUR_MS
    ref = vh[0]
    if ref[0] <= cut and vh[1][0] <= cut:
        ref = vh[bisect_right(vh, cut, key=_t) - 1]
    t0, v0 = ref[0], ref[1]
    span = t1 - t0
    if span < TREND_MIN_SPAN_MS:
        return None
    return (v1 - v0) / (span / HOUR_MS)


# ------------------------------------------------------------------------------------------------
# The shard evaluator
# ------------------------------------------------------------------------------------------------
_THRESHOLD, _RATE_OF_RISE, _ACCUMULATION = 0, 1, 2
_LEVEL_KINDS = {"threshold": _THRESHOLD, "rate_of_rise": _RATE_OF_RISE, "accumulation": _ACCUMULATION}


@dataclass(slots=True)
class _Plan:
    """The level rules that watch one station's readings of one kind."""

    items: tuple[tuple[Rule, dict[str, float], int, int, float], ...]  # (rule, bounds, kind code, window, lowest bound)
    keep: int  # how far back `hist` reaches: the longest window, or the hour of a threshold rule's trend
    acc: bool  # an accumulation rule is among them: `hist` sums the depths within a minute


class ShardEvaluator:
    """Evaluates one shard's inputs in order. Deterministic; no I/O; time comes from the inputs."""

    def __init__(self, ruleset: RuleSet, stations: dict[str, Station], zones: dict[str, Zone],
                 shard_stations: set[str] | None = None, shard_zones: set[str] | None = None) -> None:
        self.rs = ruleset
        self.stations = stations
        self.zones = zones
        # The stations this shard answers for (staleness is checked only for them).
        self.shard_stations = set(stations) if shard_stations is None else shard_stations
        # The zones this shard answers for (external warnings reach every shard; each takes its own zones).
        self.shard_zones = set(zones) if shard_zones is None else shard_zones
        self.state: dict[str, SubjectState] = {}
        self.dirty: set[str] = set()  # subjects whose state changed since the last export
        self.clock_start: int | None = None  # first time this shard saw; silence is counted from it
        self.now: int | None = None
        self.late = 0  # readings older than the newest of their station and kind, ignored
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._stale_rules = [r for r in ruleset.rules if r.kind == "stale"]
        self._incident_rules = [r for r in ruleset.rules if r.kind == "zone_incident"]
        self._forecast_rules = [r for r in ruleset.rules if r.kind == "forecast_accumulation"]
        self._warning_rules = [r for r in ruleset.rules if r.kind == "zone_warning"]
        self._zone_shapes: dict[str, Any] | None = None

    # ---- state persistence --------------------------------------------------------------------
    def export_dirty(self) -> dict[str, Any]:
        """The state of each subject that changed since the last export (`SubjectState.to_json`)."""
        state = self.state
        out = {sid: state[sid].to_json() for sid in self.dirty}
        self.dirty.clear()
        return out

    def export_clock(self) -> dict[str, Any]:
        return {"clock_start": self.clock_start, "now": self.now, "late": self.late}

    def load(self, subjects: dict[str, Any], clock: dict[str, Any] | None) -> None:
        """Load exported state: the current format, or format 1 (migrated, and written back at the
        next commit)."""
        self.state = {}
        for sid, d in subjects.items():
            s = self.state[sid] = SubjectState.from_json(d)
            if isinstance(d, dict):
                self._migrate(sid, s)
                self.dirty.add(sid)
        if clock:
            self.clock_start = clock.get("clock_start")
            self.now = clock.get("now")
            self.late = clock.get("late") or 0

    def _migrate(self, sid: str, s: SubjectState) -> None:
        """Format 1 kept a threshold rule's readings in its own `vh` and every reading of a window:
        move those readings into `hist` (where the trend is taken from now) and bring every series
        to RESOLUTION_MS."""
        st = self.stations.get(sid)
        for rule in self.rs.rules:
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
                s.hist[kind] = _downsample(h, self._plan_for(sid, kind).acc)
        for ls in s.rules.values():
            if ls.vh:
                ls.vh = _downsample(ls.vh, False)

    def open_alerts(self) -> list[dict[str, Any]]:
        return [ls.alert for s in self.state.values() for ls in s.rules.values() if ls.alert]

    # ---- planning: which rules apply to a station's kind --------------------------------------
    def _plan_for(self, station_id: str, kind: str) -> _Plan:
        key = (station_id, kind)
        plan = self._plans.get(key)
        if plan is None:
            st = self.stations.get(station_id)
            items = []
            keep = 0
            acc = False
            if st is not None:
                for r in self.rs.rules:
                    code = _LEVEL_KINDS.get(r.kind)
                    if code is not None and r.matches_station(st, kind):
                        if r.station_thresholds and st.kind != kind:
                            continue  # a station's thresholds are for its own kind of reading
                        b = r.bounds_for(st) if r.station_thresholds else dict(r.bounds or {})
                        if b:
                            items.append((r, b, code, r.window_ms, min(b.values())))
                            # a threshold rule's trend is taken from the readings of the last hour
                            keep = max(keep, r.window_ms if code else HOUR_MS)
                            acc = acc or code == _ACCUMULATION
            plan = self._plans[key] = _Plan(tuple(items), keep, acc)
        return plan

    def _tick_clock(self, t: int) -> None:
        if self.clock_start is None:
            self.clock_start = t
        if self.now is None or t > self.now:
            self.now = t

    # ---- inputs ---------------------------------------------------------------------------------
    def on_reading(self, r: Reading) -> list[AlertChange]:
        return self.reading(r.station_id, r.kind, r.t, r.value)

    def reading(self, sid: str, kind: str, t: int, value: float) -> list[AlertChange]:
        """`on_reading` without the Reading (the engine's hot path)."""
        if self.clock_start is None:
            self.clock_start = t
        if self.now is None or t > self.now:
            self.now = t
        s = self.state.get(sid)
        if s is None:
            s = self.state[sid] = SubjectState()
        last = s.last
        prev = last.get(kind)
        if prev is not None and t <= prev:
            if t < prev:
                self.late += 1
            return []  # a duplicate or a late reading: the state has moved past it
        last[kind] = t
        self.dirty.add(sid)
        changes: list[AlertChange] = []
        plan = self._plans.get((sid, kind)) or self._plan_for(sid, kind)
        if plan.items:
            # (the helpers _add_point, _trim and _apply, inlined where a reading changes nothing)
            h = s.hist.get(kind)
            if h is None:
                h = s.hist[kind] = []
            if h and h[-1][0] // RESOLUTION_MS == t // RESOLUTION_MS:
                q = h[-1]
                h[-1] = (t, value, q[-1] + value) if plan.acc else (t, value)
            else:
                h.append((t, value))
            # keep the newest point at or before (t - keep) as the window's start reference
            cut = t - plan.keep
            if len(h) > 2 and h[1][0] <= cut:
                if h[2][0] > cut:
                    del h[0]  # the usual case: one point left the span
                else:
                    _trim(h, cut)
            rstate = s.rules
            for rule, bounds, code, window, lowest in plan.items:
                ls = rstate.get(rule.id)
                if code == _THRESHOLD:
                    v = value
                    if v < lowest and (ls is None or (ls.alert is None and not ls.since and not ls.held)):
                        continue  # below every bound, nothing pending or held: nothing changes
                    trend_from = h
                else:
                    lo = t - window
                    if code == _RATE_OF_RISE:
                        ref = h[0]
                        if ref[0] > lo:
                            continue  # not a whole window of data yet
                        if h[1][0] <= lo:  # the newest point at or before the start of the window
                            ref = h[bisect_right(h, lo, key=_t) - 1]
                        v = (value - ref[1]) / (window / HOUR_MS)
                    else:  # accumulation: depths since the previous reading, summed over (t - window, t]
                        v = self._window_sum(s, kind, h, window, lo)
                    if ls is None:
                        ls = rstate[rule.id] = LevelState()
                    vh = trend_from = ls.vh  # the rule's values of the last hour, for the trend
                    if vh and vh[-1][0] // RESOLUTION_MS == t // RESOLUTION_MS:
                        vh[-1] = (t, v)
                    else:
                        vh.append((t, v))
                    if len(vh) > 2 and vh[1][0] <= t - HOUR_MS:
                        if vh[2][0] > t - HOUR_MS:
                            del vh[0]
                        else:
                            _trim(vh, t - HOUR_MS)
                    if v < lowest and ls.alert is None and not ls.since and not ls.held:
                        continue
                if ls is None:
                    ls = rstate[rule.id] = LevelState()
                ch = self._step(ls, rule, bounds, sid, v, t, trend_from)
                if ch:
                    changes.append(ch)
        for rule in self._stale_rules:
            ls = s.rules.get(rule.id)
            if ls is not None and ls.alert is not None and rule.match_kind in (None, kind):
                changes.append(self._resolve(ls, rule, t))
        return changes

    @staticmethod
    def _window_sum(s: SubjectState, kind: str, h: list, window: int, lo: int) -> float:
        """sum(depth of the points of `h` later than `lo`), added oldest first as Python's sum() does,
        so the result is exactly that of summing the window afresh.

        A running sum of the window's closed points (all but the newest, which may still grow within
        its minute) is kept in `s.acc`: a point that closes is added to it, and the window is summed
        again only when a point leaves it. That is at most once per point, i.e. once a minute however
        fast the readings come, so a reading costs O(1) amortised when a station reports faster than
        RESOLUTION_MS (and O(points in the window) when it reports slower, as a fresh sum would).
        The running sum is not stored: after a load it is summed afresh, to the same value."""
        n = len(h)
        key = (kind, window)
        c = s.acc.get(key)
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
            c = s.acc[key] = [total, first, h[-2][0] if n >= 2 else lo]
        return c[0] + h[-1][-1]

    def on_tick(self, t: int) -> list[AlertChange]:
        """The clock moved to `t`: evaluate silence. Opens alerts with no reading at all."""
        self._tick_clock(t)
        changes: list[AlertChange] = []
        if self._forecast_rules or self._warning_rules:
            changes = self._tick_external(t)
        if not self._stale_rules:
            return changes
        for rule in self._stale_rules:
            for sid in self.shard_stations:
                st = self.stations.get(sid)
                if st is None or not rule.matches_station(st):
                    continue
                s = self.state.get(sid)
                last = None
                if s is not None:
                    last = s.last.get(rule.match_kind or st.kind)
                base = last if last is not None else self.clock_start
                silent = t - base
                ls = s.rules.get(rule.id) if s is not None else None
                if silent >= rule.after_ms:
                    if ls is None or ls.alert is None:
                        if s is None:
                            s = self.state[sid] = SubjectState()
                        ls = s.rules.setdefault(rule.id, LevelState())
                        ch = self._open(ls, rule, sid, rule.level, silent / 60_000, base + rule.after_ms, t, unit="min")
                        self.dirty.add(sid)
                        changes.append(ch)
                    else:
                        ls.alert["value"] = silent / 60_000
                        ls.alert["peak_value"] = max(ls.alert["peak_value"], silent / 60_000)
                        ls.alert["updated_at"] = t
                        self.dirty.add(sid)
        return changes

    def on_incident(self, inc: Incident) -> list[AlertChange]:
        self._tick_clock(inc.time)
        changes: list[AlertChange] = []
        zone = self.zones.get(inc.zone) if inc.zone else None
        for rule in self._incident_rules:
            if rule.categories is not None and inc.category not in rule.categories:
                continue
            if not rule.matches_zone(zone):
                continue
            s = self.state.setdefault(inc.id, SubjectState())
            ls = s.rules.setdefault(rule.id, LevelState())
            if inc.status == "closed":
                if ls.alert is not None:
                    changes.append(self._resolve(ls, rule, inc.time))
                    self.dirty.add(inc.id)
            elif ls.alert is None:
                ch = self._open(ls, rule, inc.id, rule.level, None, inc.time, inc.time,
                                subject_type="incident", lon=inc.lon, lat=inc.lat, zone=inc.zone,
                                message=f"{inc.category} in {zone.name or zone.id}: {inc.description}".strip())
                changes.append(ch)
                self.dirty.add(inc.id)  # (a report that changes nothing is not written again)
        return changes

    # ---- forecasts: kept apart from the observations -----------------------------------------
    def on_forecast(self, station_id: str, kind: str, issued: int,
                    series: list[tuple[int, float]]) -> list[AlertChange]:
        """A forecast run for one station/point and kind: [(valid time, value)], issued at `issued`.

        Only the newest run counts (an older or repeated run is ignored). `forecast_accumulation`
        sums the forecast values valid in (ref, ref + window], ref being the run's issue time, and
        again at every clock tick (the window slides as time passes).
        """
        self._tick_clock(issued)
        key = FORECAST_PREFIX + kind
        s = self.state.get(station_id)
        if s is None:
            s = self.state[station_id] = SubjectState()
        prev = s.last.get(key)
        if prev is not None and issued <= prev:
            return []
        s.last[key] = issued
        s.hist[key] = sorted((int(t), float(v)) for t, v in series)
        self.dirty.add(station_id)
        return self._eval_forecast(s, station_id, kind, self.now if self.now is not None else issued)

    def _eval_forecast(self, s: SubjectState, station_id: str, kind: str, ref: int) -> list[AlertChange]:
        st = self.stations.get(station_id)
        if st is None:
            return []
        h = s.hist.get(FORECAST_PREFIX + kind) or ()
        changes = []
        for rule in self._forecast_rules:
            if not rule.matches_station(st, kind):
                continue
            hi = ref + rule.window_ms
            value = sum(v for tt, v in h if ref < tt <= hi)
            ch = self._apply(s, rule, dict(rule.bounds or {}), station_id, value, ref)
            if ch:
                changes.append(ch)
        return changes

    # ---- external warnings --------------------------------------------------------------------
    def _shapes(self) -> dict[str, Any]:
        if self._zone_shapes is None:
            from shapely.geometry import shape
            from shapely.prepared import prep

            self._zone_shapes = {zid: prep(shape(self.zones[zid].geometry))
                                 for zid in self.shard_zones if zid in self.zones}
        return self._zone_shapes

    def _warning_zones(self, w: ExternalWarning) -> set[str]:
        """The zones of this shard that the warning's area covers or touches (polygon or geocode)."""
        out: set[str] = set()
        if w.geometry:
            try:
                from shapely.geometry import shape

                area = shape(w.geometry)
                if not area.is_valid:
                    area = area.buffer(0)
            except Exception:  # a malformed area matches by geocode only
                area = None
            if area is not None and not area.is_empty:
                out = {zid for zid, pg in self._shapes().items() if pg.intersects(area)}
        if w.geocodes:
            for zid in self.shard_zones:
                z = self.zones.get(zid)
                if z is None or not z.geocodes:
                    continue
                for scheme, codes in z.geocodes.items():
                    if set(codes) & set(w.geocodes.get(scheme, ())):
                        out.add(zid)
                        break
        return out

    def _warning_level(self, rule: Rule, w: ExternalWarning) -> str | None:
        if rule.events is not None and w.event.strip().lower() not in rule.events:
            return None
        sev = w.severity if w.severity in CAP_SEVERITIES else "Unknown"
        if rule.min_severity is not None and CAP_SEVERITIES.index(sev) < CAP_SEVERITIES.index(rule.min_severity):
            return None
        if rule.level is not None:
            return rule.level
        k = _SEVERITY_FROM_TOP.get(sev)
        if k is None or k > len(self.rs.levels):
            return None
        return self.rs.levels[-k]

    def on_warning(self, w: ExternalWarning) -> list[AlertChange]:
        """An imported warning (or its update or cancellation) against the zones of this shard.

        A zone's `zone_warning` alert holds the highest level of the warnings in force over it; an
        Update replaces the messages it references, a Cancel removes them, and a warning past its
        end (`ends`, else `expires`) drops out at the next clock tick.
        """
        self._tick_clock(w.sent)
        if not self._warning_rules:
            return []
        t = self.now if self.now is not None else w.sent
        gone = set(w.references)
        until = w.until
        live = (w.msg_type in ("Alert", "Update") and w.status in WARNING_STATUSES
                and (until is None or until > t))
        if not live:
            gone.add(w.id)
        covered = self._warning_zones(w) if live else set()
        changes: list[AlertChange] = []
        for zid in self.shard_zones:
            zone = self.zones.get(zid)
            for rule in self._warning_rules:
                level = self._warning_level(rule, w) if zid in covered and rule.matches_zone(zone) else None
                s = self.state.get(zid)
                ls = s.rules.get(rule.id) if s is not None else None
                active = ls.ext if ls is not None else {}
                if level is None and not (gone & active.keys()) and w.id not in active:
                    continue
                if s is None:
                    s = self.state[zid] = SubjectState()
                if ls is None:
                    ls = s.rules[rule.id] = LevelState()
                for wid in gone:
                    ls.ext.pop(wid, None)
                if level is None:
                    ls.ext.pop(w.id, None)
                else:
                    ls.ext[w.id] = [level, until, w.event, w.headline or w.event]
                self.dirty.add(zid)
                ch = self._warning_transition(ls, rule, zid, t)
                if ch:
                    changes.append(ch)
        return changes

    def _warning_transition(self, ls: LevelState, rule: Rule, zid: str, t: int) -> AlertChange | None:
        top = None
        for wid, (lv, _until, event, headline) in sorted(ls.ext.items()):
            if top is None or self.rs.level_rank(lv) > self.rs.level_rank(top[0]):
                top = (lv, event, headline, wid)
        a = ls.alert
        if top is None:
            return self._resolve(ls, rule, t) if a is not None else None
        level, _event, headline, _wid = top
        n = len(ls.ext)
        message = headline if n == 1 else f"{headline} (+{n - 1} more)"
        if a is None:
            zone = self.zones.get(zid)
            lon = lat = None
            if zone is not None:
                lon, lat = zone.centroid()
            return self._open(ls, rule, zid, level, float(n), t, t, subject_type="zone", lon=lon, lat=lat,
                              zone=zid, unit="warnings", message=message)
        a["value"] = float(n)
        a["peak_value"] = max(a["peak_value"] or 0.0, float(n))
        a["updated_at"] = t
        a["message"] = message
        rank, old = self.rs.level_rank(level), self.rs.level_rank(a["level"])
        if rank == old:
            return None
        a["level"] = level
        if rank > self.rs.level_rank(a["peak_level"]):
            a["peak_level"] = level
        return AlertChange("raise" if rank > old else "lower", dict(a), rule)

    def _tick_external(self, t: int) -> list[AlertChange]:
        """Slide forecast windows to `t`; drop warnings whose time is over."""
        changes: list[AlertChange] = []
        if self._forecast_rules:
            for sid in self.shard_stations:
                s = self.state.get(sid)
                if s is None:
                    continue
                for key, issued in list(s.last.items()):
                    if key.startswith(FORECAST_PREFIX) and t > issued:
                        out = self._eval_forecast(s, sid, key[len(FORECAST_PREFIX):], t)
                        self.dirty.add(sid)
                        changes.extend(out)
        if self._warning_rules:
            for zid in self.shard_zones:
                s = self.state.get(zid)
                if s is None:
                    continue
                for rule in self._warning_rules:
                    ls = s.rules.get(rule.id)
                    if ls is None or not ls.ext:
                        continue
                    over = [wid for wid, (_lv, until, *_rest) in ls.ext.items() if until is not None and until <= t]
                    if over:
                        for wid in over:
                            del ls.ext[wid]
                        self.dirty.add(zid)
                        ch = self._warning_transition(ls, rule, zid, t)
                        if ch:
                            changes.append(ch)
        return changes

    # ---- lifecycle ------------------------------------------------------------------------------
    def _apply(self, s: SubjectState, rule: Rule, bounds: dict[str, float], subject: str,
               value: float, t: int) -> AlertChange | None:
        """Record the rule's `value` at `t` (for the trend) and step its levels (see `_step`)."""
        ls = s.rules.get(rule.id)
        if ls is None:
            ls = s.rules[rule.id] = LevelState()
        vh = ls.vh
        _add_point(vh, t, value, False)
        _trim(vh, t - HOUR_MS)
        return self._step(ls, rule, bounds, subject, value, t, vh)

    def _step(self, ls: LevelState, rule: Rule, bounds: dict[str, float], subject: str, value: float,
              t: int, trend_from: list) -> AlertChange | None:
        """Step the rule's levels with `value` at `t` and open, move or resolve its alert. The trend
        is taken from the points `trend_from` (the rule's values, or a threshold rule's readings)."""
        a = ls.alert
        step_levels(ls, bounds, value, t, rule.for_ms, rule.clear_margin)
        level = None
        held = ls.held
        if held:
            for lv in reversed(self.rs.levels):
                if lv in held:
                    level = lv
                    break
        change = None
        if level is None:
            if a is not None:
                change = self._resolve(ls, rule, t, value)
            return change
        if a is None:
            first = min(ls.since.values()) if ls.since else t
            return self._open(ls, rule, subject, level, value, first, t, bounds=bounds, trend_from=trend_from)
        rank, old = self.rs.level_rank(level), self.rs.level_rank(a["level"])
        a["value"] = value
        a["updated_at"] = t
        if value > (a["peak_value"] if a["peak_value"] is not None else float("-inf")):
            a["peak_value"] = value
        self._trend_and_eta(a, trend_from, bounds, value, t)
        if rank != old:
            a["level"] = level
            if rank > self.rs.level_rank(a["peak_level"]):
                a["peak_level"] = level
            self._trend_and_eta(a, trend_from, bounds, value, t)  # the next level moved with the level
            change = AlertChange("raise" if rank > old else "lower", dict(a), rule)
        return change

    def _trend_and_eta(self, a: dict[str, Any], points: list, bounds: dict[str, float], value: float,
                       t: int) -> None:
        trend = _trend(points, t)
        a["trend_per_h"] = None if trend is None else round(trend, 6)
        if trend is not None and a["trend_per_h"] <= 0:
            trend = None  # float noise (e.g. 45.400000000000006 - 45.4) is no rise: no ETA ~1e21 ms away
        nxt = None
        rank = self.rs.level_rank(a["level"])
        for lv in self.rs.levels[rank + 1:]:
            if lv in bounds:
                nxt = lv
                break
        a["next_level"] = nxt
        eta = None
        if nxt is not None and trend is not None and trend > 0:
            gap = bounds[nxt] - value
            eta = t if gap <= 0 else t + int(gap / trend * HOUR_MS)
        a["next_level_eta"] = eta

    def _open(self, ls: LevelState, rule: Rule, subject: str, level: str, value: float | None,
              first_breach: int, t: int, *, subject_type: str = "station", lon: float | None = None,
              lat: float | None = None, zone: str | None = None, unit: str | None = None,
              message: str = "", bounds: dict[str, float] | None = None,
              trend_from: list | None = None) -> AlertChange:
        st = self.stations.get(subject) if subject_type == "station" else None
        if st is not None:
            lon, lat, zone = st.lon, st.lat, st.zone
            if unit is None:
                unit = st.unit if rule.kind == "threshold" else (
                    f"{st.unit}/h" if rule.kind == "rate_of_rise" else st.unit)
        ls.alert = {
            "fingerprint": fingerprint(rule.id, subject, t),
            "rule": rule.id, "rule_kind": rule.kind, "subject": subject, "subject_type": subject_type,
            "status": "open", "level": level, "peak_level": level, "value": value, "peak_value": value,
            "unit": unit or "", "first_breach_at": first_breach, "opened_at": t, "updated_at": t,
            "resolved_at": None, "lon": lon, "lat": lat, "zone": zone, "trend_per_h": None,
            "next_level": None, "next_level_eta": None, "message": message,
        }
        if bounds is not None and value is not None:
            self._trend_and_eta(ls.alert, ls.vh if trend_from is None else trend_from, bounds, value, t)
        return AlertChange("open", dict(ls.alert), rule)

    def _resolve(self, ls: LevelState, rule: Rule, t: int, value: float | None = None) -> AlertChange:
        a = ls.alert
        assert a is not None
        a["status"] = "resolved"
        a["resolved_at"] = t
        a["updated_at"] = t
        if value is not None:
            a["value"] = value
        a["next_level"] = a["next_level_eta"] = a["trend_per_h"] = None
        ls.alert = None
        return AlertChange("resolve", dict(a), rule)


def describe_eta(alert: dict[str, Any]) -> str | None:
    """'red in about 2 h 10 min' for an alert that is rising toward its next level."""
    eta, nxt, now = alert.get("next_level_eta"), alert.get("next_level"), alert.get("updated_at")
    if eta is None or nxt is None or now is None:
        return None
    if eta <= now:
        return f"{nxt} pending"
    return f"{nxt} in about {humanize_ms(eta - now)}"
