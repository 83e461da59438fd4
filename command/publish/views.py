"""What the dashboard shows, computed from Redis: plain data, no Dash, so it is testable alone.

The page callbacks in `layouts/` are thin: they call these functions and turn the results into
components. What a viewer is not cleared for is masked or left out by the one classification
(command/trust/classification.py: every reader takes a `viewer` and hands its records to a
`Redactor`, which also audits the secret values a view shows, once per view). Nothing is kept between calls except per-process caches of derived data keyed by what is
read from Redis on every call (the station index by `registry_version`, the parsed rules by the rules
document), so several web workers never disagree. Each cache holds a bounded number of namespaces
(least recently used out): every drill is a namespace, and a worker must not grow with them.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
import redis

from command.clock import namespace_now
from command.engine.plan_inputs import read_plan_context
from command.engine.recommend import recommendation_stage
from command.keys import Keys
from command.models import Incident, Person, Resource, Station, Task, Zone
from command.ops import dispatch as dispatch_ops
from command.ops.dispatch import alert_notes, dispatch_tasks, recent_dispatches
from command.rules import Rule, RuleSet, describe_eta, parse_rules
from command.trust.classification import INTERNAL, Redactor, Viewer

LEVEL_COLORS = {"yellow": "#f2c400", "orange": "#ff7f0e", "red": "#d62728"}
NORMAL_COLOR = "#2c7fb8"
NO_DATA_COLOR = "#9e9e9e"
RESOURCE_COLORS = {"available": "#2ca02c", "dispatched": "#1f77b4", "on_scene": "#9467bd", "out_of_service": "#7f7f7f"}
RISK_COLORS = {"high": "rgba(214,39,40,0.16)", "medium": "rgba(255,127,14,0.13)", "low": "rgba(44,160,44,0.10)"}


@dataclass
class StationIndex:
    version: bytes | None
    ids: list[str]
    stations: dict[str, Station]
    pos: dict[str, int]  # station id -> index in the map trace (stable for one registry version)


V = TypeVar("V")
CACHED_NAMESPACES = 32  # per cache and process: live plus the drills being watched


class NamespaceCache(Generic[V]):
    """A per-process cache by namespace holding at most `maxsize` entries, least recently used out."""

    def __init__(self, maxsize: int = CACHED_NAMESPACES) -> None:
        self.maxsize = maxsize
        self._d: OrderedDict[str, V] = OrderedDict()

    def get(self, ns: str) -> V | None:
        v = self._d.get(ns)
        if v is not None:
            self._d.move_to_end(ns)
        return v

    def put(self, ns: str, value: V) -> None:
        self._d[ns] = value
        self._d.move_to_end(ns)
        while len(self._d) > self.maxsize:
            self._d.popitem(last=False)

    def pop(self, ns: str, default: V | None = None) -> V | None:
        return self._d.pop(ns, default)

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        self._d.clear()


_STATIONS: NamespaceCache[StationIndex] = NamespaceCache()


def station_index(r: redis.Redis, keys: Keys) -> StationIndex:
    version = r.hget(keys.meta, "registry_version")
    cached = _STATIONS.get(keys.ns)
    if cached is not None and cached.version == version:
        return cached
    stations = {k.decode(): Station.model_validate_json(v) for k, v in r.hgetall(keys.stations).items()}
    ids = sorted(stations)
    idx = StationIndex(version, ids, stations, {sid: i for i, sid in enumerate(ids)})
    _STATIONS.put(keys.ns, idx)
    return idx


def zones(r: redis.Redis, keys: Keys) -> dict[str, Zone]:
    return {k.decode(): Zone.model_validate_json(v) for k, v in r.hgetall(keys.zones).items()}


def resources(r: redis.Redis, keys: Keys, viewer: Viewer = INTERNAL) -> list[Resource]:
    """Resources and where they are (internal: none for a viewer not cleared)."""
    if not Redactor(viewer).allowed("resources"):
        return []
    return sorted((Resource.model_validate_json(v) for v in r.hvals(keys.resources)), key=lambda x: x.id)


def incidents(r: redis.Redis, keys: Keys, viewer: Viewer = INTERNAL, view: str = "map") -> list[Incident]:
    """Incidents, oldest first, each with its reporter as `viewer` may see it (audited as `view`)."""
    red = Redactor(viewer)
    out = []
    for raw in r.hvals(keys.incidents):
        rec = orjson.loads(raw)
        shown = red.record("incidents", rec, rec.get("id", ""))
        if shown is not None:
            out.append(Incident.model_validate(shown))
    red.audit(r, keys, view)
    return sorted(out, key=lambda i: i.time)


def reporters(r: redis.Redis, keys: Keys, ids: list[str], red: Redactor) -> dict[str, Person]:
    """The reporter of each of these incidents that has one, as `red`'s viewer may see it."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    out = {}
    for iid, raw in zip(ids, r.hmget(keys.incidents, ids), strict=True):
        if raw is None:
            continue
        shown = red.record("incidents", orjson.loads(raw), iid)
        if shown and shown.get("reporter"):
            out[iid] = Person.model_validate(shown["reporter"])
    return out


def open_alerts(r: redis.Redis, keys: Keys, rank: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Open alerts, most severe first, then oldest first."""
    fps = [fp.decode() for fp in r.zrange(keys.alerts_open, 0, -1)]
    raws = r.mget([keys.alert(fp) for fp in fps]) if fps else []
    alerts = [orjson.loads(x) for x in raws if x is not None]
    rank = rank or level_rank(r, keys)
    alerts.sort(key=lambda a: (-rank.get(a["level"], -1), a["opened_at"], a["fingerprint"]))
    return alerts


def level_rank(r: redis.Redis, keys: Keys) -> dict[str, int]:
    raw = r.get(keys.rules)
    levels = orjson.loads(raw).get("levels", ["yellow", "orange", "red"]) if raw else ["yellow", "orange", "red"]
    return {lv: i for i, lv in enumerate(levels)}


def station_levels(alerts: list[dict[str, Any]], rank: dict[str, int]) -> dict[str, str]:
    """The highest open level per station (any rule)."""
    out: dict[str, str] = {}
    for a in alerts:
        if a.get("subject_type") != "station":
            continue
        cur = out.get(a["subject"])
        if cur is None or rank.get(a["level"], -1) > rank.get(cur, -1):
            out[a["subject"]] = a["level"]
    return out


def latest_values(r: redis.Redis, keys: Keys, ids: list[str] | None = None) -> dict[str, dict[str, list]]:
    if ids is None:
        return {k.decode(): orjson.loads(v) for k, v in r.hgetall(keys.latest).items()}
    if not ids:
        return {}
    return {sid: orjson.loads(v) for sid, v in zip(ids, r.hmget(keys.latest, ids), strict=True) if v}


# ---- versions: what changed since the client's last update -----------------------------------------
def _last_id(r: redis.Redis, stream: str) -> str:
    last = r.xrevrange(stream, count=1)
    return last[0][0].decode() if last else "0-0"


def records_digest(values: list[bytes]) -> int:
    """A checksum of a hash's records, whatever order Redis lists them in."""
    h = 0
    for v in sorted(values):
        h = zlib.crc32(v, h)
    return h


def versions(r: redis.Redis, keys: Keys) -> dict[str, Any]:
    """A small vector that changes when anything the operator map shows changes.

    Resources and incidents are digests of their records (not counts): a change to one that is
    already there, a boat back in service or an incident closed, changes the vector too."""
    with r.pipeline(transaction=False) as p:
        p.xrevrange(keys.alerts_stream, count=1)
        p.xrevrange(keys.dispatches_stream, count=1)
        p.xrevrange(keys.status_stream, count=1)
        p.get(keys.latest_seq)
        p.hvals(keys.resources)
        p.hvals(keys.incidents)
        p.hget(keys.meta, "registry_version")
        p.get(keys.clock)
        a, d, s, seq, res, inc, reg, clock = p.execute()

    def sid(x):
        return x[0][0].decode() if x else "0-0"

    return {"ns": keys.ns, "alerts": sid(a), "dispatches": sid(d), "status": sid(s), "seq": int(seq or 0),
            "resources": records_digest(res), "incidents": records_digest(inc), "registry": (reg or b"").decode(),
            "clock": int(clock) if clock else None}


def changed_stations(r: redis.Redis, keys: Keys, since_seq: int) -> list[str]:
    return [x.decode() for x in r.zrangebyscore(keys.latest_changed, f"({since_seq}", "+inf")]


# ---- map data --------------------------------------------------------------------------------------
def station_hover(st: Station, latest: dict[str, list] | None, level: str | None) -> list:
    """customdata for one station: [id, name, zone, value text, level text]."""
    value = ""
    if latest and st.kind in latest:
        value = f"{latest[st.kind][1]:.2f} {st.unit}"
    return [st.id, st.name_zh and f"{st.name} · {st.name_zh}" or st.name, st.zone or "", value, level or ""]


def station_color(level: str | None, has_data: bool) -> str:
    if level:
        return LEVEL_COLORS.get(level, "#000000")
    return NORMAL_COLOR if has_data else NO_DATA_COLOR


@dataclass
class MapData:
    lon: list[float] = field(default_factory=list)
    lat: list[float] = field(default_factory=list)
    color: list[str] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    custom: list[list] = field(default_factory=list)


def station_layer(idx: StationIndex, latest: dict[str, dict[str, list]], levels: dict[str, str]) -> MapData:
    m = MapData()
    for sid in idx.ids:
        st = idx.stations[sid]
        lv = levels.get(sid)
        m.lon.append(st.lon)
        m.lat.append(st.lat)
        m.color.append(station_color(lv, sid in latest))
        m.size.append(14 if lv else 9)
        m.custom.append(station_hover(st, latest.get(sid), lv))
    return m


def zone_layers(zs: dict[str, Zone], alerts: list[dict[str, Any]], rank: dict[str, int]) -> list[dict[str, Any]]:
    """MapLibre layers: each zone filled by its risk, outlined by its most severe open alert."""
    worst: dict[str, str] = {}
    for a in alerts:
        z = a.get("zone") or (a["subject"] if a.get("subject_type") == "zone" else None)
        if z and (z not in worst or rank.get(a["level"], -1) > rank.get(worst[z], -1)):
            worst[z] = a["level"]
    layers = []
    for z in zs.values():
        feature = {"type": "Feature", "geometry": z.geometry, "properties": {"id": z.id}}
        layers.append({"source": feature, "sourcetype": "geojson", "type": "fill", "below": "traces",
                       "color": RISK_COLORS.get(z.risk or "", "rgba(120,120,120,0.08)")})
        lv = worst.get(z.id, "")
        layers.append({"source": feature, "sourcetype": "geojson", "type": "line", "below": "traces",
                       "color": LEVEL_COLORS.get(lv, "#5c6b7a"), "line": {"width": 4 if lv else 1}})
    return layers


def station_series(r: redis.Redis, keys: Keys, station_id: str, count: int = 200) -> list[tuple[int, float]]:
    st = station_index(r, keys).stations.get(station_id)
    kind = st.kind if st else None
    out = []
    for _, f in r.xrevrange(keys.series(station_id), count=count):
        if kind is None or f[b"k"].decode() == kind:
            out.append((int(f[b"t"]), float(f[b"v"])))
    out.reverse()
    return out


# ---- alert queue -----------------------------------------------------------------------------------
def recommendations(r: redis.Redis, keys: Keys, fps: list[str]) -> dict[str, dict[str, Any]]:
    if not fps:
        return {}
    raws = r.mget([keys.recommendation(fp) for fp in fps])
    return {fp: orjson.loads(x) for fp, x in zip(fps, raws, strict=True) if x is not None}


_RULES: NamespaceCache[tuple[bytes | None, RuleSet | None]] = NamespaceCache()


def _ruleset(r: redis.Redis, keys: Keys) -> RuleSet | None:
    raw = r.get(keys.rules)
    cached = _RULES.get(keys.ns)
    if cached is not None and cached[0] == raw:
        return cached[1]
    rs = parse_rules(orjson.loads(raw), source=keys.rules) if raw else None
    _RULES.put(keys.ns, (raw, rs))
    return rs


def current_recommendations(r: redis.Redis, keys: Keys, alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each alert's recommendation, made again from the resources as they are now if one it named
    has since been dispatched or gone out of service (so one click never sends what is not there)."""
    recs = recommendations(r, keys, [a["fingerprint"] for a in alerts])
    if not recs:
        return recs
    res = resources(r, keys)
    available = {x.id for x in res if x.status.value == "available"}
    stale = [a for a in alerts if a["fingerprint"] in recs
             and not all(i["resource_id"] in available for i in recs[a["fingerprint"]].get("items", []))]
    if not stale:
        return recs
    rs = _ruleset(r, keys)
    # planned over every open alert of the namespace, on its road map, at its clock (docs/dispatch.md)
    context = read_plan_context(r, keys, rs, now=namespace_now(r, keys))
    for fresh in recommendation_stage(((a, _rule(rs, a["rule"])) for a in stale), lambda: res, context):
        out = fresh.model_dump()
        out["refreshed"] = True
        recs[fresh.fingerprint] = out
    return recs


def _rule(rs: RuleSet | None, rule_id: str) -> Rule | None:
    try:
        return rs.by_id(rule_id) if rs else None
    except KeyError:
        return None


def claims(r: redis.Redis, keys: Keys, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    if not pairs:
        return {}
    raws = r.mget([keys.dispatch_claim(fp, lv) for fp, lv in pairs])
    return {p: orjson.loads(x) for p, x in zip(pairs, raws, strict=True) if x is not None}


def alert_queue(r: redis.Redis, keys: Keys, viewer: Viewer = INTERNAL) -> list[dict[str, Any]]:
    """Open alerts for the queue, each with its recommendation, operator notes, dispatch state and,
    for an incident's alert, the incident's reporter (as `viewer` may see each; audited once).

    An alert an operator resolved stays out of the queue unless the data took it above the level
    it had when it was resolved (acknowledging never hides anything).
    """
    red = Redactor(viewer)
    if not red.allowed("alerts"):
        return []
    rank = level_rank(r, keys)
    alerts = open_alerts(r, keys, rank)
    fps = [a["fingerprint"] for a in alerts]
    notes = alert_notes(r, keys, fps)
    recs = current_recommendations(r, keys, alerts)
    cl = claims(r, keys, [(a["fingerprint"], a["level"]) for a in alerts])
    idx = station_index(r, keys)
    people = reporters(r, keys, [a["subject"] for a in alerts if a.get("subject_type") == "incident"], red)
    out = []
    for a in alerts:
        fp = a["fingerprint"]
        n = notes.get(fp, {})
        if n.get("resolved_at") and rank.get(a["level"], -1) <= rank.get(n.get("resolved_level", ""), -1):
            continue
        st = idx.stations.get(a["subject"]) if a.get("subject_type") == "station" else None
        shown = red.record("alerts", a, fp) or {}
        rec = recs.get(fp)
        claim = cl.get((fp, a["level"]))
        reporter = people.get(a["subject"]) if a.get("subject_type") == "incident" else None
        out.append({
            **shown, "notes": red.record("alert_notes", n, fp) or {},
            "recommendation": red.record("recommendations", rec, fp) if rec else None,
            "claim": red.record("dispatches", claim, fp) if claim else None,
            "subject_name": (st.name if st else shown.get("message", "").split(":")[0][:60]) or a["subject"],
            "subject_name_zh": st.name_zh if st else "",
            "outlook": describe_eta(a),
            "reporter": reporter.model_dump() if reporter else None,
        })
    red.audit(r, keys, "alert_queue")
    return out


# ---- dispatch tracking -----------------------------------------------------------------------------
def dispatch_board(r: redis.Redis, keys: Keys, count: int = 30, viewer: Viewer = INTERNAL) -> list[dict[str, Any]]:
    """The newest dispatches with their tasks (people assisted, notes) and the reporter of the incident
    each is about, as `viewer` may see them (audited once)."""
    red = Redactor(viewer)
    if not red.allowed("dispatches"):
        return []
    ds = recent_dispatches(r, keys, count)
    people = reporters(r, keys, [d.subject for d in ds], red)
    out = []
    for d in ds:
        tasks = [red.record("tasks", t.model_dump(), t.id) for t in dispatch_tasks(r, keys, d)]
        reporter = people.get(d.subject)
        out.append({"dispatch": red.record("dispatches", d.model_dump(), d.id),
                    "tasks": [t for t in tasks if t is not None],
                    "reporter": reporter.model_dump() if reporter else None})
    red.audit(r, keys, "dispatch_board")
    return out


@dataclass
class TaskView:
    task: Task
    reporter: Person | None  # the reporter of the incident the task is about, if any


def department_tasks(r: redis.Redis, keys: Keys, department: str, viewer: Viewer = INTERNAL) -> list[TaskView]:
    """A department's tasks (newest first, as command.ops.dispatch gives them), each with the reporter
    of its incident, as `viewer` may see them (audited once)."""
    out, red = department_tasks_unaudited(r, keys, department, viewer)
    red.audit(r, keys, "department_tasks")
    return out


def department_tasks_unaudited(r: redis.Redis, keys: Keys, department: str,
                               viewer: Viewer) -> tuple[list[TaskView], Redactor]:
    """`department_tasks` and the Redactor that read them, not yet audited: a caller that shows the
    same view to several viewers of one clearance audits each one (`audit_read`)."""
    red = Redactor(viewer)
    tasks = [t for t in (red.model("tasks", t) for t in dispatch_ops.department_tasks(r, keys, department)) if t]
    people = reporters(r, keys, [t.subject for t in tasks], red)
    return [TaskView(t, people.get(t.subject)) for t in tasks], red


def audit_read(r: redis.Redis, keys: Keys, viewer: Viewer, revealed: dict[str, set[str]], view: str) -> bool:
    """Audit `viewer`'s read of a view that showed `revealed` (as its own Redactor would)."""
    return Redactor(viewer, revealed={k: set(v) for k, v in revealed.items()}).audit(r, keys, view)
