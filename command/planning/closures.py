"""Which incidents close roads, how far around them, and when.

An incident of category `road_closed` closes every road segment within 100 m of it, `levee_breach`
within 500 m, from the time it is reported until a report of it as `closed`. A closure is kept as a
record (a plain dict, stored as JSON by the engine) so that a plan at any instant can tell which
closures were in force then:

    {"id": "INC-007", "category": "road_closed", "lat": 30.585, "lon": 114.305, "radius_m": 100,
     "opened": <ms>, "closed": <ms> or None}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from command.models import Incident

CLOSURE_RADIUS_M = {"road_closed": 100.0, "levee_breach": 500.0}


@dataclass(frozen=True, slots=True)
class Closure:
    id: str
    lon: float
    lat: float
    radius_m: float


def closes_roads(inc: Incident) -> bool:
    return inc.category in CLOSURE_RADIUS_M


def merge_closure(prev: dict[str, Any] | None, inc: Incident) -> dict[str, Any] | None:
    """The closure record after the report `inc` of the same incident (None: no record to keep).

    A report of a closing category opens (or moves) the closure; a `closed` report, or one whose
    category no longer closes roads, ends it at the report's time. A record is never dropped, so a
    plan made for an earlier instant still sees the closure that was in force then."""
    radius = CLOSURE_RADIUS_M.get(inc.category)
    if prev is None:
        if radius is None or inc.status == "closed":
            return None
        return {"id": inc.id, "category": inc.category, "lat": inc.lat, "lon": inc.lon, "radius_m": radius,
                "opened": inc.time, "closed": None}
    rec = dict(prev)
    if radius is None or inc.status == "closed":
        if rec.get("closed") is None:
            rec["closed"] = max(inc.time, rec["opened"])
        return rec
    if rec.get("closed") is not None:  # reported again after it was closed: closed again from now
        rec["opened"], rec["closed"] = inc.time, None
    rec.update(category=inc.category, lat=inc.lat, lon=inc.lon, radius_m=radius)
    return rec


def in_force(records: Iterable[dict[str, Any]], at: int) -> list[Closure]:
    """The closures in force at `at`: reported at or before it, not closed by then. Sorted by id."""
    out = [Closure(str(r["id"]), float(r["lon"]), float(r["lat"]), float(r["radius_m"])) for r in records
           if r["opened"] <= at and (r.get("closed") is None or r["closed"] > at)]
    out.sort(key=lambda c: c.id)
    return out
