"""Dispatched units on their way, drawn by road: for each task of the newest dispatches that is not
yet on scene, the fastest open road route from each of its units to the task's place, avoiding the
roads closed now. The route is the one planning gives (`RoadNetwork.trips(...).path`), with the
straight access legs at both ends; off the network, a straight line."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from command.i18n import t
from command.keys import Keys
from command.ops.dispatch import dispatch_tasks, recent_dispatches
from command.planning.closures import in_force
from command.planning.profiles import DEFAULT_SPEED_KMH
from command.planning.roads import RoadNetwork
from command.publish import views
from command.trust.classification import INTERNAL, Redactor, Viewer

from . import words  # noqa: F401 - the page's words
from .basemap import ROUTE_COLOR

ON_THE_WAY = ("assigned", "acknowledged", "en_route")  # a task whose units are not there yet


def _speeds(r, keys: Keys) -> dict[str, float]:
    """Each resource type's own speed (rules.yaml `resource_types:`), for roads drawn without one."""
    raw = r.get(keys.rules)
    types = (orjson.loads(raw).get("resource_types") or {}) if raw else {}
    out = {}
    for name, prof in types.items() if isinstance(types, dict) else ():
        speed = prof.get("speed_kmh") if isinstance(prof, dict) else None
        if isinstance(speed, int | float) and speed > 0:
            out[str(name)] = float(speed)
    return out


def unit_routes(r, keys: Keys, net: RoadNetwork | None, closure_records: list[dict[str, Any]], now: int | None,
                viewer: Viewer = INTERNAL, count: int = 30) -> list[dict[str, Any]]:
    """[{task, resource_id, name, coords: [(lon, lat), ...]}] for the units on their way, as `viewer`
    may see them (nothing for a viewer not cleared for dispatches, tasks and resources)."""
    red = Redactor(viewer)
    if not (red.allowed("dispatches") and red.allowed("tasks") and red.allowed("resources")):
        return []
    res = {x.id: x for x in views.resources(r, keys, viewer)}
    closures = in_force(closure_records, now if now is not None else 2**62)
    speeds: dict[str, float] | None = None
    out = []
    for d in recent_dispatches(r, keys, count):
        for task in dispatch_tasks(r, keys, d):
            if task.status not in ON_THE_WAY or task.lat is None or task.lon is None:
                continue
            units = [res[i] for i in task.resource_ids if i in res and res[i].status.value == "dispatched"]
            if not units:
                continue
            target = (task.lon, task.lat)
            by_type: dict[str, list] = {}
            for u in units:
                by_type.setdefault(u.type, []).append(u)
            for rtype, group in by_type.items():
                path: list[list[tuple[float, float]]] = [[] for _ in group]
                if net is not None:
                    if speeds is None:
                        speeds = _speeds(r, keys)
                    trips = net.trips(target, np.array([[u.lon, u.lat] for u in group]),
                                      speeds.get(rtype, DEFAULT_SPEED_KMH), closures)
                    path = [trips.path(i) for i in range(len(group))]
                for u, p in zip(group, path, strict=True):
                    out.append({"task": task.id, "resource_id": u.id, "name": u.name or u.id,
                                "coords": [(u.lon, u.lat), *p, target]})
    return out


def route_trace(routes: list[dict[str, Any]], lang: str) -> dict[str, Any]:
    """All routes as one line trace (None between routes): one trace however many units."""
    lon: list[float | None] = []
    lat: list[float | None] = []
    text: list[str | None] = []
    for rt in routes:
        for x, y in rt["coords"]:
            lon.append(x)
            lat.append(y)
            text.append(f"{rt['name']} ({rt['resource_id']}) → {rt['task']}")
        lon.append(None)
        lat.append(None)
        text.append(None)
    return {"type": "scattermap", "name": t("map.routes", lang), "mode": "lines", "lon": lon, "lat": lat,
            "line": {"width": 4, "color": ROUTE_COLOR}, "text": text, "hovertemplate": "%{text}<extra></extra>"}
