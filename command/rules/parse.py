"""Parsing `rules.yaml`: the rule vocabulary, validated once, with messages that name the file and rule.

Pure: a loaded YAML document in, a `RuleSet` out (or a `RuleError`, which is an `InvalidInput`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from command.errors import InvalidInput
from command.models import Station, Zone
from command.planning.profiles import DEFAULT_SPEED_KMH, TypeProfile
from command.timeutil import parse_duration

RULE_KINDS = ("threshold", "rate_of_rise", "accumulation", "stale", "zone_incident",
              "forecast_accumulation", "zone_warning")
# CAP 1.2 severities, lowest first: the values of a `zone_warning` rule's `min_severity` (see zone_warnings.py)
CAP_SEVERITIES = ("Unknown", "Minor", "Moderate", "Severe", "Extreme")


class RuleError(InvalidInput):
    """A rules file that cannot be used. The message names the file and the rule."""


@dataclass(frozen=True, slots=True)
class Recommend:
    type: str
    count: int = 1
    # the type's entry in `resource_types:` (speed where roads give none, set-up time); None: defaults
    profile: TypeProfile | None = None


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
    # the units asked for should be working within this long of the alert opening (or rising)
    respond_within_ms: int | None = None
    # after a task on this rule's alert is completed, watch the station this long (None: 1 h) for a
    # rise above `verify_rise` (None: a tenth of the gap between its levels); command/ops/verify.py
    verify_within_ms: int | None = None
    verify_rise: float | None = None

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

    def silence_kind(self, st: Station) -> str:
        """The kind of reading a `stale` rule listens for at `st`: `match.kind`, else the station's own
        kind. Silence is measured on that kind and only a reading of it resolves the alert."""
        return self.match_kind or st.kind

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
    # `resource_types:`: each type's planning profile (docs/dispatch.md)
    resource_types: dict[str, TypeProfile] = field(default_factory=dict)

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
    resource_types = _parse_resource_types(data.get("resource_types"), source)
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
        rules.append(_parse_rule(raw, rid, tuple(levels), where, resource_types))
    return RuleSet(levels=tuple(levels), rules=rules, resource_types=resource_types)


_RESOURCE_TYPE_KEYS = {"speed_kmh", "setup", "description"}


def _parse_resource_types(raw: Any, source: str) -> dict[str, TypeProfile]:
    """`resource_types: {pump: {speed_kmh: 40, setup: 30m}, ...}`: each type's planning profile."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RuleError(f"{source}: `resource_types` must be a mapping like {{pump: {{speed_kmh: 40, setup: 30m}}}}")
    out: dict[str, TypeProfile] = {}
    for name, spec in raw.items():
        where = f"{source}: resource_types.{name}"
        if not isinstance(name, str) or not name:
            raise RuleError(f"{source}: `resource_types` names a type {name!r}: expected a type name")
        spec = spec or {}
        if not isinstance(spec, dict):
            raise RuleError(f"{where}: expected a mapping like {{speed_kmh: 40, setup: 30m}}, got {spec!r}")
        unknown = sorted(set(spec) - _RESOURCE_TYPE_KEYS)
        if unknown:
            raise RuleError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} "
                            f"(allowed: {', '.join(sorted(_RESOURCE_TYPE_KEYS))})")
        speed = spec.get("speed_kmh", DEFAULT_SPEED_KMH)
        if isinstance(speed, bool) or not isinstance(speed, int | float) or not math.isfinite(speed) or speed <= 0:
            raise RuleError(f"{where}: `speed_kmh` must be a number above 0, got {speed!r}")
        out[name] = TypeProfile(speed_kmh=float(speed), setup_ms=_duration(spec, "setup", where, default=0))
    return out


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


_COMMON_KEYS = {"id", "kind", "match", "recommend", "description", "respond_within", "verify_within", "verify_rise"}
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


def _parse_rule(raw: dict, rid: str, levels: tuple[str, ...], where: str,
                resource_types: dict[str, TypeProfile] | None = None) -> Rule:
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
        parsed.append(Recommend(rec["type"], count, (resource_types or {}).get(rec["type"])))
    rule.recommend = tuple(parsed)
    if "respond_within" in raw:
        rule.respond_within_ms = _duration(raw, "respond_within", where)
        if rule.respond_within_ms <= 0:
            raise RuleError(f"{where}: `respond_within` must be positive")
    if "verify_within" in raw:
        rule.verify_within_ms = _duration(raw, "verify_within", where)
        if rule.verify_within_ms <= 0:
            raise RuleError(f"{where}: `verify_within` must be positive")
    if "verify_rise" in raw:
        rise = raw["verify_rise"]
        if isinstance(rise, bool) or not isinstance(rise, int | float) or not rise > 0 or rise == float("inf"):
            raise RuleError(f"{where}: `verify_rise` must be a number > 0, got {rise!r}")
        rule.verify_rise = float(rise)
    return rule

