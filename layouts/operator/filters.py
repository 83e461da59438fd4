"""The alert list's filters: by level, by zone and by department (the departments an alert's
recommendation sends). The controls, their values checked as hostile input, and the test per alert."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from dash import dcc, html

from command.i18n import t

from . import words  # noqa: F401 - the page's words

LEVELS = ("red", "orange", "yellow")


@dataclass(frozen=True)
class Filter:
    levels: frozenset[str] | None = None  # None: every level
    zones: frozenset[str] = frozenset()  # empty: every zone
    departments: frozenset[str] = frozenset()  # empty: every department

    @property
    def active(self) -> bool:
        return self.levels is not None or bool(self.zones) or bool(self.departments)

    def signature(self) -> list:
        return [sorted(self.levels) if self.levels is not None else None, sorted(self.zones), sorted(self.departments)]


NONE = Filter()


def _names(v: Any, limit: int = 200) -> frozenset[str] | None:
    """A list of short names, or None when it is not one (then the filter is left off)."""
    if v is None:
        return frozenset()
    if not isinstance(v, list) or len(v) > limit or not all(isinstance(x, str) and 0 < len(x) <= 100 for x in v):
        return None
    return frozenset(v)


def parse(levels: Any, zones: Any, departments: Any) -> Filter:
    """The filter the controls say; a value that is not what the controls send counts as no filter."""
    lv = _names(levels, 10) if levels is not None else None  # none ticked shows none; no value, all
    if lv is not None and not lv <= set(LEVELS):
        lv = None
    zs, ds = _names(zones), _names(departments)
    return Filter(levels=None if lv is None or lv == set(LEVELS) else lv, zones=zs or frozenset(),
                  departments=ds or frozenset())


def keep(a: dict[str, Any], f: Filter) -> bool:
    if f.levels is not None and a.get("level") not in f.levels:
        return False
    if f.zones:
        zone = a.get("zone") or (a.get("subject") if a.get("subject_type") == "zone" else None)
        if zone not in f.zones:
            return False
    if f.departments:
        rec = a.get("recommendation") or {}
        depts = {i.get("department") for i in rec.get("items", [])}
        if not depts & f.departments:
            return False
    return True


def marker(f: Filter) -> list[html.Span]:
    """The level and zone filter in force, for the map (assets/map-overlay.js dims the stations it
    leaves out); nothing when there is none."""
    if f.levels is None and not f.zones:
        return []
    state = {"levels": sorted(f.levels) if f.levels is not None else None, "zones": sorted(f.zones)}
    return [html.Span(id="map-filter-state", className="card-anchor", **{"data-filter": orjson.dumps(state).decode()})]


def controls(lang: str, zones: dict[str, Any], departments: dict[str, str]) -> html.Div:
    """Level tick boxes, a zone and a department picker, above the alert list."""
    name = "name_zh" if lang == "zh" else "name"
    zone_opts = [{"label": getattr(z, name) or z.name or zid, "value": zid} for zid, z in sorted(zones.items())]
    dept_opts = [{"label": v, "value": k} for k, v in departments.items() if k != "emergency_management"]
    return html.Div([
        html.Span(t("filter.level", lang), className="muted"),
        dcc.Checklist(id="map-filter-level", className="filter-levels", value=list(LEVELS),
                      options=[{"label": t(f"level.{lv}", lang), "value": lv} for lv in LEVELS]),
        dcc.Dropdown(id="map-filter-zone", className="filter-select", options=zone_opts, multi=True,
                     placeholder=t("filter.any_zone", lang)),
        dcc.Dropdown(id="map-filter-dept", className="filter-select", options=dept_opts, multi=True,
                     placeholder=t("filter.any_department", lang)),
    ], className="map-filters", id="map-filters")
