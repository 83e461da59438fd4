"""Which resources to send, and why. Pure: takes the alert, the rule's request and the resources.

`recommendation_stage` is the one stage that turns alerts into recommendations: the engine's commit
runs it on the alerts that opened or rose, the read model (`publish.views`) on those whose
recommendation names a resource no longer available.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from command.models import Recommendation, RecommendedResource, Resource, ResourceStatus
from command.rules import Recommend, Rule

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _dept_label(dept: str) -> str:
    return dept.replace("_", " ")


def recommend(alert: dict[str, Any], requests: Iterable[Recommend], resources: Iterable[Resource],
              now: int) -> Recommendation | None:
    """The nearest `available` resources of each requested type, nearest first, each with a reason.

    Resources in any other state (dispatched, on scene, out of service) are never proposed. Where
    fewer are available than asked, the recommendation says so in `shortfall`.
    """
    requests = list(requests)
    lat, lon = alert.get("lat"), alert.get("lon")
    if not requests or lat is None or lon is None:
        return None
    by_type: dict[str, list[tuple[float, Resource]]] = {}
    wanted_types = {q.type for q in requests}
    for res in resources:
        if res.status != ResourceStatus.available or res.type not in wanted_types:
            continue
        by_type.setdefault(res.type, []).append((haversine_km(lat, lon, res.lat, res.lon), res))
    items: list[RecommendedResource] = []
    shortfall: list[dict[str, Any]] = []
    where = alert.get("subject", "")
    for q in requests:
        ranked = sorted(by_type.get(q.type, []), key=lambda dr: (dr[0], dr[1].id))
        chosen = ranked[: q.count]
        for rank, (dist, res) in enumerate(chosen, 1):
            nth = "nearest" if rank == 1 else f"{_ordinal(rank)} nearest"
            cap = f", capacity {res.capacity:g}" if res.capacity is not None else ""
            items.append(RecommendedResource(
                resource_id=res.id, type=res.type, department=res.department, name=res.name,
                distance_km=round(dist, 2),
                reason=f"{nth} available {res.type.replace('_', ' ')} to {where}: {dist:.1f} km, "
                       f"{_dept_label(res.department)}{cap}",
            ))
        if len(chosen) < q.count:
            shortfall.append({"type": q.type, "wanted": q.count, "found": len(chosen)})
    return Recommendation(fingerprint=alert["fingerprint"], rule=alert["rule"], subject=alert["subject"],
                          level=alert["level"], created_at=now, items=items, shortfall=shortfall)


def recommendation_stage(alerts: Iterable[tuple[dict[str, Any], Rule | None]],
                         resources: Callable[[], list[Resource]]) -> list[Recommendation]:
    """A recommendation for each (alert, rule) whose rule asks for resources, in order, made at the
    alert's `updated_at` (data time, so a replay gives the same ones). `resources` is called once,
    and only when some rule asks."""
    wanted = [(a, rule) for a, rule in alerts if rule is not None and rule.recommend]
    if not wanted:
        return []
    available = resources()
    out = []
    for a, rule in wanted:
        rec = recommend(a, rule.recommend, available, a["updated_at"])
        if rec is not None:
            out.append(rec)
    return out


def _ordinal(n: int) -> str:
    return f"{n}{'tsnrhtdd'[(n // 10 % 10 != 1) * (n % 10 < 4) * n % 10::4]}"
