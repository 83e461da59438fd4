"""The recommendation stage's inputs, read from a namespace: the Redis edge of dispatch planning.

`command.engine.recommend.recommendation_stage` and `command.planning` are pure; this module reads
what they need (docs/dispatch.md):

- `read_plan_context`: every open alert and its current recommendation, the alerts already
  dispatched at their level, the road network (`keys.roads`, parsed once per registry version and
  process), the road closures (`keys.road_closures`) and the time zone;
- `closure_updates`: the closure records a batch of incidents changes (the engine writes them in
  its commit, so they survive a restart and every engine of the namespace sees them);
- `engine_recommendations`: what the engine commit runs for one batch of alert events.

The read model (`command.publish.views.current_recommendations`) can call `read_plan_context` and
pass it to the stage, so that a refresh plans over every open alert too.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
import redis

from command.engine.recommend import PlanContext, recommendation_stage
from command.keys import Keys
from command.models import Incident, Recommendation, Resource
from command.planning.closures import closes_roads, merge_closure
from command.planning.roads import RoadNetwork
from command.rules import AlertChange, RuleSet

_NETWORKS: OrderedDict[str, tuple[bytes | None, RoadNetwork | None]] = OrderedDict()
CACHED_NETWORKS = 32  # namespaces per process (live and the drills being run or watched)


_READ = object()


def road_network(r: redis.Redis, keys: Keys, version: Any = _READ) -> RoadNetwork | None:
    """The namespace's road network (None: it has none), built once per registry version
    (`version`: the registry version when the caller has already read it)."""
    if version is _READ:
        version = r.hget(keys.meta, "registry_version")
    cached = _NETWORKS.get(keys.ns)
    if cached is not None and cached[0] == version:
        _NETWORKS.move_to_end(keys.ns)
        return cached[1]
    raw = r.get(keys.roads)
    net = RoadNetwork.from_geojson(orjson.loads(raw), source=keys.roads) if raw else None
    _NETWORKS[keys.ns] = (version, net)
    while len(_NETWORKS) > CACHED_NETWORKS:
        _NETWORKS.popitem(last=False)
    return net


def read_plan_context(r: redis.Redis, keys: Keys, ruleset: RuleSet | None, *, now: int | None = None) -> PlanContext:
    """Everything the stage plans over besides the alerts of a call, as the namespace holds it now."""
    fps = [fp.decode() for fp in r.zrange(keys.alerts_open, 0, -1)]
    with r.pipeline(transaction=False) as p:
        if fps:
            p.mget([keys.alert(fp) for fp in fps])
            p.mget([keys.recommendation(fp) for fp in fps])
        p.hvals(keys.road_closures)
        p.hget(keys.meta, "timezone")
        p.hget(keys.meta, "registry_version")  # read here: one round trip less per batch that re-plans
        got = p.execute()
    raw_alerts, raw_recs = (got[0], got[1]) if fps else ([], [])
    raw_closures, tz, version = got[-3], got[-2], got[-1]
    alerts = [orjson.loads(x) for x in raw_alerts if x is not None]
    recs = {fp: orjson.loads(x) for fp, x in zip(fps, raw_recs, strict=False) if x is not None}
    asking = [a for a in alerts if a["fingerprint"] in recs]
    claimed = r.mget([keys.dispatch_claim(a["fingerprint"], a["level"]) for a in asking]) if asking else []
    served = frozenset(a["fingerprint"] for a, c in zip(asking, claimed, strict=True) if c is not None)
    return PlanContext(alerts=alerts, recommendations=recs, served=served, ruleset=ruleset,
                       network=road_network(r, keys, version), closures=[orjson.loads(x) for x in raw_closures],
                       tz=(tz.decode() if tz else None) or None, now=now)


def closure_updates(r: redis.Redis, keys: Keys, incidents: Sequence[Incident]) -> dict[str, dict[str, Any]]:
    """The closure records after a batch's incident reports, in order (only those that changed)."""
    ids = sorted({i.id for i in incidents})
    if not ids:
        return {}
    current = {i: orjson.loads(x) for i, x in zip(ids, r.hmget(keys.road_closures, ids), strict=True) if x}
    changed: dict[str, dict[str, Any]] = {}
    for inc in incidents:
        if inc.id not in current and not closes_roads(inc):
            continue
        rec = merge_closure(current.get(inc.id), inc)
        if rec is not None and rec != current.get(inc.id):
            current[inc.id] = changed[inc.id] = rec
    return changed


def engine_recommendations(r: redis.Redis, keys: Keys, ruleset: RuleSet, changes: Iterable[AlertChange],
                           incidents: Sequence[Incident], resources: Callable[[], list[Resource]],
                           ) -> tuple[list[Recommendation], dict[str, dict[str, Any]]]:
    """One engine batch: its recommendations (each lifecycle event re-plans over every open alert of
    the namespace, as committed before this batch), and the closure records to write with them."""
    closures = closure_updates(r, keys, incidents)
    events = [(c.alert, c.rule, c.event) for c in changes if c.rule.recommend]
    if not any(e in ("open", "raise", "resolve") for _, _, e in events):
        return [], closures
    ctx = read_plan_context(r, keys, ruleset)
    if closures:
        merged = {str(c["id"]): c for c in ctx.closures}
        merged.update(closures)
        ctx.closures = list(merged.values())
    return recommendation_stage(events, resources, ctx), closures


__all__ = ["closure_updates", "engine_recommendations", "read_plan_context", "road_network"]
