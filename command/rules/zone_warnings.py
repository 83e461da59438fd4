"""External warnings (CAP 1.2, NWS, UK EA) against zones: which zones a warning covers, the level it
gives under a `zone_warning` rule, and the zone alert's level from the warnings in force.

Pure: the warnings and the time come from the input. Shapely is imported when first needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from command.models import ExternalWarning, Zone
from command.rules.alerts import AlertChange, open_alert, resolve_alert
from command.rules.parse import CAP_SEVERITIES, Rule, RuleSet
from command.rules.state import LevelState

# a warning in one of these CAP statuses can open an alert; Test, System and Draft never do
WARNING_STATUSES = frozenset({"Actual", "Exercise"})
# `level: severity` maps the top three CAP severities onto the top three levels (1 = the top one)
_SEVERITY_FROM_TOP = {"Extreme": 1, "Severe": 2, "Moderate": 3}


class ZoneAreas:
    """The zones one shard answers for, matched against a warning's area (polygon or circle, as
    GeoJSON) or its geocodes. The zones' prepared polygons are built once, at the first warning."""

    def __init__(self, zones: Mapping[str, Zone], shard_zones: Iterable[str]) -> None:
        self.zones = zones
        self.shard_zones = shard_zones
        self._shapes: dict[str, Any] | None = None

    def _prepared(self) -> dict[str, Any]:
        if self._shapes is None:
            from shapely.geometry import shape
            from shapely.prepared import prep

            self._shapes = {zid: prep(shape(self.zones[zid].geometry))
                            for zid in self.shard_zones if zid in self.zones}
        return self._shapes

    def covered(self, w: ExternalWarning) -> set[str]:
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
                out = {zid for zid, pg in self._prepared().items() if pg.intersects(area)}
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


def warning_level(rule: Rule, w: ExternalWarning, levels: tuple[str, ...]) -> str | None:
    """The level warning `w` gives under `rule` (None: the rule does not count it): the rule's fixed
    `level`, or with `level: severity` Extreme/Severe/Moderate as the top three of `levels`."""
    if rule.events is not None and w.event.strip().lower() not in rule.events:
        return None
    sev = w.severity if w.severity in CAP_SEVERITIES else "Unknown"
    if rule.min_severity is not None and CAP_SEVERITIES.index(sev) < CAP_SEVERITIES.index(rule.min_severity):
        return None
    if rule.level is not None:
        return rule.level
    k = _SEVERITY_FROM_TOP.get(sev)
    if k is None or k > len(levels):
        return None
    return levels[-k]


def expire_warnings(ls: LevelState, t: int) -> bool:
    """Drop the warnings in force whose time (`ends`, else `expires`) is over at `t`. Did any go?"""
    over = [wid for wid, (_lv, until, *_rest) in ls.ext.items() if until is not None and until <= t]
    for wid in over:
        del ls.ext[wid]
    return bool(over)


def warning_transition(ls: LevelState, rs: RuleSet, rule: Rule, zid: str, zone: Zone | None,
                       t: int) -> AlertChange | None:
    """Bring the zone's alert in line with the warnings in force (`ls.ext`): open it, move it to the
    highest level in force, or resolve it when none is left. Its value is the number in force."""
    top = None
    for wid, (lv, _until, event, headline) in sorted(ls.ext.items()):
        if top is None or rs.level_rank(lv) > rs.level_rank(top[0]):
            top = (lv, event, headline, wid)
    a = ls.alert
    if top is None:
        return resolve_alert(ls, rule, t) if a is not None else None
    level, _event, headline, _wid = top
    n = len(ls.ext)
    message = headline if n == 1 else f"{headline} (+{n - 1} more)"
    if a is None:
        lon = lat = None
        if zone is not None:
            lon, lat = zone.centroid()
        return open_alert(ls, rule, zid, level, float(n), t, t, subject_type="zone", lon=lon, lat=lat,
                          zone=zid, unit="warnings", message=message)
    a["value"] = float(n)
    a["peak_value"] = max(a["peak_value"] or 0.0, float(n))
    a["updated_at"] = t
    a["message"] = message
    rank, old = rs.level_rank(level), rs.level_rank(a["level"])
    if rank == old:
        return None
    a["level"] = level
    if rank > rs.level_rank(a["peak_level"]):
        a["peak_level"] = level
    return AlertChange("raise" if rank > old else "lower", dict(a), rule)
