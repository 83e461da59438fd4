"""Namespaces: naming, creating, preparing and deleting them, and their dead letters. The one place.

A namespace is every key `Keys(ns)` builds: `live` for live operation, `drill-<scenario>-<8 hex>`
for a replay or an exercise-page drill, `record-<id>` while recording. Its keys never reach
another's, nor a global key (`command.keys.RESERVED_NAMESPACES`).

- `new_namespace`: a fresh drill name;
- `load_namespace`: a scenario's registry (stations, zones, resources, rules, base map, roads), its
  quarantine as dead letters, its clock at the scenario's start, consumer groups on every shard;
- `prepare_namespace`: a namespace ready for live feeds and an engine (meta, groups, rules, zones);
- `bootstrap_live`: `live` from the sample scenario the first time (no faults, no clock);
- `delete_namespace`: every key of a namespace;
- `deadletter`: quarantine one rejected record with its reason.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import redis
import yaml

from command.clock import namespace_now
from command.config import SAMPLE_DATA, Settings
from command.keys import ACK_TIMER_NAMESPACES, AUDIT_NAMESPACES, LIVE, Keys
from command.rules import parse_rules
from command.streams import ensure_group, shard_count
from command.timeutil import now_ms

if TYPE_CHECKING:  # the scenario loader (pandas, shapely) is imported only by the functions that load
    from command.scenarios.load import Scenario

DEADLETTER_MAXLEN = 100_000


def new_namespace(scenario_name: str) -> str:
    """A new drill namespace for a scenario: `drill-<scenario>-<8 hex>`."""
    safe = "".join(c if c.isalnum() or c in "_-" else "-" for c in scenario_name)[:40] or "scenario"
    return f"drill-{safe}-{uuid.uuid4().hex[:8]}"


def deadletter(r: redis.Redis | Any, keys: Keys, source: str, record: Any, reason: str, **extra: Any) -> None:
    """Quarantine one rejected record with its reason (r may be a pipeline)."""
    fields = {"source": source, "reason": reason, "record": orjson.dumps(record, default=str)}
    fields.update({k: str(v) for k, v in extra.items()})
    r.xadd(keys.deadletter, fields, maxlen=DEADLETTER_MAXLEN, approximate=True)


def load_namespace(r: redis.Redis, keys: Keys, sc: Scenario, shards: int = 1, mode: str = "exercise") -> None:
    """Write the scenario's registry (stations, zones, resources, rules) and its quarantine to a namespace."""
    pipe = r.pipeline(transaction=True)
    pipe.hsetnx(keys.meta, "shards", shards)
    pipe.hset(keys.meta, mapping={
        "scenario": sc.name, "start": sc.start, "timezone": sc.timezone or "", "mode": mode,
        "description": sc.description, "folder": str(sc.folder),
    })
    if sc.stations:
        pipe.hset(keys.stations, mapping={s.id: s.model_dump_json() for s in sc.stations.values()})
    if sc.zones:
        pipe.hset(keys.zones, mapping={z.id: z.model_dump_json() for z in sc.zones.values()})
    if sc.resources:
        pipe.hset(keys.resources, mapping={x.id: x.model_dump_json() for x in sc.resources})
    pipe.set(keys.rules, orjson.dumps(sc.rules_doc))
    if sc.basemap is not None:
        pipe.set(keys.basemap, orjson.dumps(sc.basemap))
    if sc.roads is not None:
        pipe.set(keys.roads, orjson.dumps(sc.roads))
    else:
        pipe.delete(keys.roads)
    pipe.hincrby(keys.meta, "registry_version", 1)
    pipe.set(keys.clock, sc.start)
    for q in sc.quarantine:
        deadletter(pipe, keys, q["source"], q["row"], q["reason"], line=q["line"])
    pipe.execute()
    for s in range(shard_count(r, keys, shards)):
        ensure_group(r, keys.shard_stream(s))


def prepare_namespace(r: redis.Redis, keys: Keys, *, rules: str | Path | None = None, zones: str | Path | None = None,
                      mode: str = "live", shards: int = 1) -> None:
    """Make a namespace ready for feeds and an engine: meta, shard groups, rules (and zones).

    The rules are `rules` (a YAML file), else the sample's when the namespace has none yet; a rules
    file that cannot be used raises `command.rules.RuleError`. A namespace with no clock gets the
    wall clock's time: this is the live edge, where time is the wall's.
    """
    r.hsetnx(keys.meta, "mode", mode)
    r.hsetnx(keys.meta, "scenario", keys.ns)
    n = shard_count(r, keys, shards)
    for s in range(n):
        ensure_group(r, keys.shard_stream(s))
    changed = False
    if rules is not None or r.get(keys.rules) is None:
        path = Path(rules) if rules is not None else SAMPLE_DATA / "rules.yaml"
        doc = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        parse_rules(doc, source=str(path))
        r.set(keys.rules, orjson.dumps(doc))
        changed = True
    if zones is not None:
        from command.scenarios.reference import load_zones

        zs = load_zones(Path(zones))
        if zs:
            r.hset(keys.zones, mapping={z.id: z.model_dump_json() for z in zs.values()})
        changed = True
    if changed:
        r.hincrby(keys.meta, "registry_version", 1)
    if namespace_now(r, keys) is None:
        r.set(keys.clock, now_ms())


def bootstrap_live(r: redis.Redis, scenario: str | Path | None = None) -> None:
    """Live needs a rule set and the reference data before an engine can start: the sample's, at first.

    Nothing happens when `live` has rules already. The sample's deliberate faults belong to the
    exercise, not to live, and live gets no clock until its first live tick.
    """
    from command.scenarios.load import load_scenario

    keys = Keys(LIVE)
    if r.exists(keys.rules):
        return
    sc = load_scenario(scenario if scenario is not None else Settings().default_scenario)
    sc.quarantine = []
    load_namespace(r, keys, sc, mode="live")
    r.delete(keys.clock)


NAMESPACE_REGISTRIES = (ACK_TIMER_NAMESPACES, AUDIT_NAMESPACES)  # global sets that name namespaces


def delete_namespace(r: redis.Redis, keys: Keys) -> int:
    """Delete every key of the namespace and its entries in the global registries (nothing else).
    Returns how many keys were deleted."""
    n = 0
    # a registry entry would outlive the keys it points at (the timer sweep and the anchor loop
    # would visit a namespace that is gone)
    for registry in NAMESPACE_REGISTRIES:
        r.srem(registry, keys.ns)
    for pattern in keys.pattern():
        batch = []
        for key in r.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                n += r.delete(*batch)
                batch = []
        if batch:
            n += r.delete(*batch)
    return n
