"""Point-in-zone lookups: which zone a station or an incident lies in.

Its own module (shapely only, no other project module) so that the scenario loader, the incident
write path and the drill runner can all use it without importing one another.
"""

from __future__ import annotations

from shapely.geometry import Point, shape
from shapely.prepared import prep

from command.models import Zone


class ZoneLocator:
    """Point-in-zone lookups with prepared geometries (the first zone listed wins on overlap)."""

    def __init__(self, zones: dict[str, Zone]) -> None:
        self._prepared = [(zid, prep(shape(z.geometry))) for zid, z in zones.items()]

    def zone_of(self, lon: float, lat: float) -> str | None:
        p = Point(lon, lat)
        for zid, pg in self._prepared:
            if pg.covers(p):
                return zid
        return None


__all__ = ["ZoneLocator"]
