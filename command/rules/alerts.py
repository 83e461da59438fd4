"""An alert's lifecycle: open, raise, lower, resolve, and the deterministic fingerprint.

Each function changes one rule's `LevelState` for one subject in place and returns the `AlertChange`
it made (or None). Pure: the time is the input's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from command.models import Station
from command.rules.levels import step_levels, trend_and_eta
from command.rules.parse import Rule, RuleSet
from command.rules.state import LevelState, SubjectState
from command.rules.windows import HOUR_MS, add_point, trim


def fingerprint(rule_id: str, subject: str, opened_at: int) -> str:
    """Deterministic alert identity: the same data always yields the same fingerprint."""
    return hashlib.sha1(f"{rule_id}\x1f{subject}\x1f{opened_at}".encode()).hexdigest()[:16]


@dataclass(slots=True)
class AlertChange:
    """A lifecycle event: open, raise, lower or resolve. `alert` is a snapshot of the alert just after
    the change (the live dict moves on as later readings of the same batch arrive)."""

    event: str
    alert: dict[str, Any]
    rule: Rule


def open_alert(ls: LevelState, rule: Rule, subject: str, level: str, value: float | None,
               first_breach: int, t: int, *, station: Station | None = None, subject_type: str = "station",
               lon: float | None = None, lat: float | None = None, zone: str | None = None,
               unit: str | None = None, message: str = "", rs: RuleSet | None = None,
               bounds: dict[str, float] | None = None, trend_from: list | None = None) -> AlertChange:
    """Open the rule's alert on `subject` at `level`. A station subject gives its position, zone and
    unit; with `rs` and `bounds`, the trend and next level are taken from `trend_from` (else `ls.vh`)."""
    if station is not None:
        lon, lat, zone = station.lon, station.lat, station.zone
        if unit is None:
            unit = station.unit if rule.kind == "threshold" else (
                f"{station.unit}/h" if rule.kind == "rate_of_rise" else station.unit)
    ls.alert = {
        "fingerprint": fingerprint(rule.id, subject, t),
        "rule": rule.id, "rule_kind": rule.kind, "subject": subject, "subject_type": subject_type,
        "status": "open", "level": level, "peak_level": level, "value": value, "peak_value": value,
        "unit": unit or "", "first_breach_at": first_breach, "opened_at": t, "updated_at": t,
        "resolved_at": None, "lon": lon, "lat": lat, "zone": zone, "trend_per_h": None,
        "next_level": None, "next_level_eta": None, "message": message,
    }
    if rs is not None and bounds is not None and value is not None:
        trend_and_eta(ls.alert, rs, ls.vh if trend_from is None else trend_from, bounds, value, t)
    return AlertChange("open", dict(ls.alert), rule)


def resolve_alert(ls: LevelState, rule: Rule, t: int, value: float | None = None) -> AlertChange:
    """Resolve the rule's open alert at `t` (with its last `value`, when there is one)."""
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


def step_alert(ls: LevelState, rs: RuleSet, rule: Rule, bounds: dict[str, float], subject: str,
               value: float, t: int, trend_from: list, stations: Mapping[str, Station]) -> AlertChange | None:
    """Step the rule's levels with `value` at `t` and open, move or resolve its alert. The trend
    is taken from the points `trend_from` (the rule's values, or a threshold rule's readings)."""
    a = ls.alert
    step_levels(ls, bounds, value, t, rule.for_ms, rule.clear_margin)
    level = None
    held = ls.held
    if held:
        for lv in reversed(rs.levels):
            if lv in held:
                level = lv
                break
    change = None
    if level is None:
        if a is not None:
            change = resolve_alert(ls, rule, t, value)
        return change
    if a is None:
        first = min(ls.since.values()) if ls.since else t
        return open_alert(ls, rule, subject, level, value, first, t, station=stations.get(subject),
                          rs=rs, bounds=bounds, trend_from=trend_from)
    rank, old = rs.level_rank(level), rs.level_rank(a["level"])
    a["value"] = value
    a["updated_at"] = t
    if value > (a["peak_value"] if a["peak_value"] is not None else float("-inf")):
        a["peak_value"] = value
    trend_and_eta(a, rs, trend_from, bounds, value, t)
    if rank != old:
        a["level"] = level
        if rank > rs.level_rank(a["peak_level"]):
            a["peak_level"] = level
        trend_and_eta(a, rs, trend_from, bounds, value, t)  # the next level moved with the level
        change = AlertChange("raise" if rank > old else "lower", dict(a), rule)
    return change


def apply_value(s: SubjectState, rs: RuleSet, rule: Rule, bounds: dict[str, float], subject: str,
                value: float, t: int, stations: Mapping[str, Station]) -> AlertChange | None:
    """Record the rule's `value` at `t` (for the trend) and step its levels (see `step_alert`)."""
    ls = s.rules.get(rule.id)
    if ls is None:
        ls = s.rules[rule.id] = LevelState()
    vh = ls.vh
    add_point(vh, t, value, False)
    trim(vh, t - HOUR_MS)
    return step_alert(ls, rs, rule, bounds, subject, value, t, vh, stations)
