"""Drills: scenario replays that the exercise page starts, paces, pauses, injects into and stops.

One `DrillRunner` process serves every drill. Each drill has its own namespace (so it can never
touch live data), its own replay clock and its own engine; they are the same ReplayFeed and Engine
as `python -m command replay`, so a drill behaves exactly like the headless replay.

The page talks to the runner through Redis only: commands on the `DRILL_COMMANDS` stream, state in
each drill's `replay_control` hash and in the `DRILLS` registry.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from command.clock import namespace_now
from command.engine.consumer import Engine
from command.geo import ZoneLocator
from command.keys import DRILL_COMMANDS, DRILL_CURSOR, DRILLS, Keys
from command.models import Incident, Resource, ResourceStatus
from command.scenarios.clock import ReplayClock, parse_speed
from command.scenarios.feed import ReplayFeed
from command.scenarios.load import ScenarioError, load_scenario
from command.scenarios.namespaces import load_namespace, new_namespace
from command.timeutil import now_ms
from command.trust import audit

log = logging.getLogger(__name__)


# ---- the page side: send commands, read state -------------------------------------------------------
def send(r: redis.Redis, cmd: str, **fields: Any) -> str:
    body = {"cmd": cmd, **{k: (v if isinstance(v, str) else orjson.dumps(v).decode()) for k, v in fields.items()}}
    return r.xadd(DRILL_COMMANDS, body, maxlen=10_000, approximate=True).decode()


def start_drill(r: redis.Redis, scenario: str | Path, speed: str, by: str) -> str:
    """Ask the runner to start a drill; returns its namespace at once (the runner loads it)."""
    name = Path(scenario).name
    ns = new_namespace(name)
    r.hset(DRILLS, ns, orjson.dumps({"namespace": ns, "scenario": name, "folder": str(scenario), "speed": speed,
                                     "by": by, "status": "starting", "created": now_ms()}))
    send(r, "start", ns=ns, scenario=str(scenario), speed=speed, by=by)
    return ns


def list_drills(r: redis.Redis) -> list[dict[str, Any]]:
    out = [orjson.loads(v) for v in r.hvals(DRILLS)]
    return sorted(out, key=lambda d: d.get("created", 0), reverse=True)


def drill_state(r: redis.Redis, ns: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in r.hgetall(Keys(ns).replay_control).items()}


def is_drill(r: redis.Redis, ns: str) -> bool:
    return r.hget(Keys(ns).meta, "mode") == b"exercise"


# ---- the runner ----------------------------------------------------------------------------------
@dataclass
class _Drill:
    ns: str
    keys: Keys
    feed: ReplayFeed
    clock: ReplayClock
    engine: Engine
    by: str
    locator: ZoneLocator


class DrillRunner:
    def __init__(self, r: redis.Redis, *, chunk: int = 2000) -> None:
        self.r = r
        self.chunk = chunk
        self.active: dict[str, _Drill] = {}
        self._busy = False  # did the last step publish or evaluate anything
        self._last_id = (r.get(DRILL_CURSOR) or b"0-0").decode()

    def _registry(self, ns: str, **update: Any) -> None:
        raw = self.r.hget(DRILLS, ns)
        cur = orjson.loads(raw) if raw else {"namespace": ns}
        cur.update(update)
        self.r.hset(DRILLS, ns, orjson.dumps(cur))

    def _control(self, d: _Drill, **extra: Any) -> None:
        feed = d.feed
        state = {"clock": feed.clock_t, "start": feed.sc.start, "end": feed.sc.end,
                 "speed": "max" if d.clock.speed is None else f"{d.clock.speed:g}",
                 "paused": "1" if d.clock.paused else "0", "published": feed.published, "total": feed.total,
                 "status": "finished" if feed.done else ("paused" if d.clock.paused else "running"),
                 "timezone": feed.sc.timezone or ""}
        state.update(extra)
        self.r.hset(d.keys.replay_control, mapping={k: str(v) for k, v in state.items()})

    # commands
    def _start(self, ns: str, scenario: str, speed: str, by: str) -> None:
        try:
            sc = load_scenario(scenario)
            clock_speed = parse_speed(speed)
        except (ScenarioError, ValueError) as exc:
            self._registry(ns, status="failed", error=str(exc))
            log.warning("drill %s could not start: %s", ns, exc)
            return
        keys = Keys(ns)
        load_namespace(self.r, keys, sc, shards=1, mode="exercise")
        engine = Engine(self.r, keys, consumer=f"drill-{ns}")
        engine.start()
        feed = ReplayFeed(self.r, keys, sc, shards=1, before_inject=engine.drain, record=True)
        d = _Drill(ns, keys, feed, ReplayClock(sc.start, clock_speed), engine, by, ZoneLocator(sc.zones))
        self.active[ns] = d
        self._registry(ns, status="running", scenario=sc.name, start=sc.start, end=sc.end)
        self._control(d)
        audit.record(self.r, keys, who=by, action="drill_start", at=sc.start,
                     details={"scenario": sc.name, "speed": speed})

    def _inject(self, d: _Drill, kind: str, data: dict[str, Any], by: str) -> None:
        k = d.keys
        now = namespace_now(self.r, k, d.feed.clock_t)  # the feed keeps it at the drill's scenario time
        if kind == "incident":
            from command.errors import CommandError
            from command.ops import incidents

            # the one incident path (validated like a person's report, owned by the system, audited
            # in the same transaction); what the feed has buffered goes first
            payload = {("id" if f == "incident_id" else f): v for f, v in data.items()}
            payload.setdefault("severity", "red")
            d.feed.writer.flush()
            try:
                inc: Incident = incidents.submit(self.r, k, payload, incidents.Actor.system(by), incidents.DRILL,
                                                 now=now).incident
            except CommandError as exc:  # InvalidInput, Forbidden (another department's incident)
                log.warning("drill %s: incident inject refused: %s", d.ns, exc)
                return
            data = {**data, "incident_id": inc.id}
        elif kind == "resource_status":
            raw = self.r.hget(k.resources, str(data["resource_id"]))
            if raw is None:
                return
            res = Resource.model_validate_json(raw)
            res.status = ResourceStatus(str(data["status"]))
            self.r.hset(k.resources, res.id, res.model_dump_json())
        self.r.xadd(k.events, {"type": kind, "at": now, "data": orjson.dumps(data)})
        if kind != "incident":  # an incident's audit entry landed with it
            audit.record(self.r, k, who=by, action=f"inject_{kind}", at=now, details=data)

    def handle(self, fields: dict[bytes, bytes]) -> None:
        f = {k.decode(): v.decode() for k, v in fields.items()}
        cmd, ns = f.get("cmd"), f.get("ns", "")
        if cmd == "start":
            self._start(ns, f["scenario"], f.get("speed", "60"), f.get("by", "planner"))
            return
        d = self.active.get(ns)
        if d is None:
            return
        by = f.get("by") or "unknown"  # the signed-in user who sent it (layouts/exercise.py)
        if cmd == "pause":
            d.clock.pause()
            self._audit(d, by, "drill_pause", {})
        elif cmd == "resume":
            d.clock.resume()
            self._audit(d, by, "drill_resume", {})
        elif cmd == "speed":
            try:
                d.clock.set_speed(parse_speed(f.get("speed", "60")))
            except ValueError:
                return
            self._audit(d, by, "drill_speed", {"speed": f.get("speed", "60")})
        elif cmd == "inject":
            try:
                self._inject(d, f["type"], orjson.loads(f.get("data", "{}")), f.get("by", "planner"))
            except (KeyError, ValueError, TypeError) as exc:
                log.warning("drill %s: inject refused: %s", ns, exc)
                return
        elif cmd == "stop":
            d.engine.release()
            del self.active[ns]
            self._control(d, status="stopped")
            self._registry(ns, status="stopped")
            self._audit(d, by, "drill_stop", {"published": d.feed.published, "total": d.feed.total})
            return
        self._control(d)

    def _audit(self, d: _Drill, by: str, action: str, details: dict[str, Any]) -> None:
        """Pause, resume, speed and stop go on the drill's audit trail, at the drill's time."""
        now = namespace_now(self.r, d.keys, d.feed.clock_t)
        audit.record(self.r, d.keys, who=by, action=action, at=now, details={"drill": d.ns, **details})

    def step(self, block_ms: int = 100) -> None:
        # wait for commands only as long as the drills can spare: not at all while they have work
        resp = self.r.xread({DRILL_COMMANDS: self._last_id}, count=100,
                            block=block_ms if not self.active else (1 if self._busy else 50))
        for _, entries in resp or ():
            for eid, fields in entries:
                self._last_id = eid.decode()
                self.r.set(DRILL_CURSOR, self._last_id)  # a restarted runner goes on from here
                try:
                    self.handle(fields)
                except redis.RedisError:
                    raise
                except Exception:  # one bad command must not stop every drill
                    log.exception("drill command failed: %s", fields)
        self._busy = False
        for ns, d in list(self.active.items()):
            published = d.feed.publish_until(d.clock.now(), max_entries=self.chunk)
            processed = d.engine.poll(block_ms=None)
            self._busy = self._busy or bool(published or processed)
            self._control(d)
            if d.feed.done:
                d.engine.drain()
                d.engine.release()
                self._registry(ns, status="finished")
                del self.active[ns]

    def run(self, stop: threading.Event) -> None:
        # drills that were running when a previous runner stopped cannot resume mid-timeline
        for d in list_drills(self.r):
            if d.get("status") == "running":
                self._registry(d["namespace"], status="interrupted")
        while not stop.is_set():
            self.step()
