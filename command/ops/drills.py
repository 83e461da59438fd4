"""Drills: scenario replays that the exercise page starts, paces, pauses, injects into and stops.

One `DrillRunner` process serves every drill. Each drill has its own namespace (so it can never
touch live data), its own replay clock and its own engine; they are the same ReplayFeed and Engine
as `python -m command replay`, so a drill behaves exactly like the headless replay.

The page talks to the runner through Redis only: commands on the `DRILL_COMMANDS` stream, state in
each drill's `replay_control` hash and in the `DRILLS` registry.

A drill survives the runner's restart and Redis going away: the feed saves its position in the
drill's `replay_control` hash in the same transaction as what it publishes, the engine's state and
pending entries are in Redis, and a command is marked handled (`DRILL_CURSOR`) only after it was
handled (handling one twice changes nothing). At start, and after any Redis outage, the runner
rebuilds every running drill from Redis (`DrillRunner.resume`) and goes on from where it was; a
drill that cannot be resumed (its scenario folder gone, no saved position) is marked `interrupted`
(`reconcile_drills`, which the supervisor also calls before asking "is a drill running?").
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
from command.config import DEFAULT_TRIM_SECONDS
from command.engine.consumer import Engine, backoff_delay
from command.errors import Conflict
from command.geo import ZoneLocator
from command.keys import DRILL_COMMANDS, DRILL_CURSOR, DRILLS, Keys
from command.models import Incident, Resource, ResourceStatus
from command.runtime.redis_client import as_unavailable
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


CONTROLLABLE = ("starting", "running", "paused")


def check_command(cmd: str, status: str, paused: bool) -> None:
    """Conflict when a drill in `status` cannot take `cmd` (a page drawn before the drill moved on, or a
    second click): the runner would ignore it, so the page says so instead of seeming to do it."""
    if status not in CONTROLLABLE:
        raise Conflict(f"the drill is {status or 'gone'}, not running", key="err.drill_not_running")
    if cmd == "pause" and paused:
        raise Conflict("the drill is already paused", key="err.drill_already_paused")
    if cmd == "resume" and not paused:
        raise Conflict("the drill is already running", key="err.drill_already_running")


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


def drill_states(r: redis.Redis, namespaces: list[str]) -> list[dict[str, str]]:
    """`drill_state` of each of `namespaces`, in one round trip (the exercise page asks every second)."""
    pipe = r.pipeline(transaction=False)
    for ns in namespaces:
        pipe.hgetall(Keys(ns).replay_control)
    return [{k.decode(): v.decode() for k, v in raw.items()} for raw in pipe.execute()]


def is_drill(r: redis.Redis, ns: str) -> bool:
    return r.hget(Keys(ns).meta, "mode") == b"exercise"


def _update_registry(r: redis.Redis, ns: str, **update: Any) -> None:
    raw = r.hget(DRILLS, ns)
    cur = orjson.loads(raw) if raw else {"namespace": ns}
    cur.update(update)
    r.hset(DRILLS, ns, orjson.dumps(cur))


def resume_problem(r: redis.Redis, rec: dict[str, Any]) -> str | None:
    """Why a drill the registry says is running cannot be resumed, or None when it can."""
    folder = rec.get("folder")
    if not folder or not Path(folder).is_dir():
        return f"its scenario folder {folder!r} is gone"
    if ReplayFeed.saved_position(r, Keys(rec["namespace"]).replay_control) is None:
        return "it has no saved position (started by an older version)"
    return None


def reconcile_drills(r: redis.Redis) -> list[str]:
    """Mark `interrupted` every drill registered as running that cannot be resumed; the others are
    left running for the drill runner to resume. Returns the namespaces marked."""
    marked = []
    for rec in list_drills(r):
        if rec.get("status") != "running":
            continue
        problem = resume_problem(r, rec)
        if problem is not None:
            _update_registry(r, rec["namespace"], status="interrupted", error=f"cannot be resumed: {problem}")
            marked.append(rec["namespace"])
    return marked


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
    written: dict[str, str] | None = None  # the control state last written (None: write it at once)


class DrillRunner:
    def __init__(self, r: redis.Redis, *, chunk: int = 2000, backoff: tuple[float, float] = (0.2, 10.0)) -> None:
        self.r = r
        self.chunk = chunk
        self.backoff = backoff  # (first wait, longest wait) in seconds after Redis went away
        self.active: dict[str, _Drill] = {}
        self._busy = False  # did the last step publish or evaluate anything
        self._last_id: str | None = None  # the last command handled; read from DRILL_CURSOR at first
        self.retries = 0  # Redis outages `run` backed off from, in all

    def _registry(self, ns: str, **update: Any) -> None:
        _update_registry(self.r, ns, **update)

    def _control(self, d: _Drill, **extra: Any) -> None:
        feed = d.feed
        state = {"clock": feed.clock_t, "start": feed.sc.start, "end": feed.sc.end,
                 "speed": "max" if d.clock.speed is None else f"{d.clock.speed:g}",
                 "paused": "1" if d.clock.paused else "0", "published": feed.published, "total": feed.total,
                 "status": "finished" if feed.done else ("paused" if d.clock.paused else "running"),
                 "timezone": feed.sc.timezone or ""}
        state.update(extra)
        mapping = {k: str(v) for k, v in state.items()}
        if mapping == d.written:
            return  # unchanged (a paused drill, or one waiting for its next entry): no write at all
        self.r.hset(d.keys.replay_control, mapping=mapping)
        d.written = mapping  # only once written: after a failed write the next step writes it again

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
        engine = Engine(self.r, keys, consumer=f"drill-{ns}", trim_every_s=DEFAULT_TRIM_SECONDS)
        engine.start()
        feed = ReplayFeed(self.r, keys, sc, shards=1, before_inject=engine.drain, record=True,
                          position_key=keys.replay_control)
        feed.save_position()  # nothing published yet: a restart from here goes on from the start
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
            raw = self.r.hget(DRILLS, ns)
            if ns in self.active or (raw is not None and orjson.loads(raw).get("status") != "starting"):
                return  # handled before (a restarted runner reads again the command it did not mark)
            try:
                self._start(ns, f["scenario"], f.get("speed", "60"), f.get("by", "planner"))
            except Exception as exc:
                if as_unavailable(exc) is None:  # not Redis going away (then it is tried again): a bug
                    self.active.pop(ns, None)
                    self._registry(ns, status="failed", error=f"could not start: {exc}")
                raise
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
        if self._last_id is None:
            self._last_id = (self.r.get(DRILL_CURSOR) or b"0-0").decode()
        # wait for commands only as long as the drills can spare: not at all while they have work
        resp = self.r.xread({DRILL_COMMANDS: self._last_id}, count=100,
                            block=block_ms if not self.active else (1 if self._busy else 50))
        for _, entries in resp or ():
            for eid, fields in entries:
                try:
                    self.handle(fields)
                except Exception as exc:
                    if as_unavailable(exc) is not None:
                        raise  # Redis went away: the command is handled again after `resume`
                    log.exception("drill command failed: %s", fields)  # one bad command must not stop every drill
                self._last_id = eid.decode()
                self.r.set(DRILL_CURSOR, self._last_id)  # handled: a restarted runner goes on after it
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

    # ---- resuming ------------------------------------------------------------------------------------
    def resume(self) -> list[str]:
        """Rebuild every running drill from what Redis holds (at start, and after Redis went away):
        the feed at its saved position, the engine from its committed state and pending entries, the
        pace and pause from the drill's control hash. A drill that cannot be resumed is marked
        `interrupted`. Returns the namespaces resumed."""
        self.active.clear()
        self._last_id = (self.r.get(DRILL_CURSOR) or b"0-0").decode()
        resumed = []
        for rec in list_drills(self.r):
            if rec.get("status") != "running":
                continue
            ns = rec["namespace"]
            try:
                self._resume(rec)
            except (ScenarioError, ValueError, OSError) as exc:
                self._registry(ns, status="interrupted", error=f"cannot be resumed: {exc}")
                log.warning("drill %s cannot be resumed: %s", ns, exc)
                continue
            resumed.append(ns)
        return resumed

    def _resume(self, rec: dict[str, Any]) -> None:
        ns = rec["namespace"]
        problem = resume_problem(self.r, rec)
        if problem is not None:
            raise ValueError(problem)
        keys = Keys(ns)
        sc = load_scenario(rec["folder"])
        ctl = drill_state(self.r, ns)
        saved = ReplayFeed.saved_position(self.r, keys.replay_control)
        assert saved is not None
        engine = Engine(self.r, keys, consumer=f"drill-{ns}",  # the same consumer: its shard at once
                        trim_every_s=DEFAULT_TRIM_SECONDS)
        engine.start()
        feed = ReplayFeed(self.r, keys, sc, shards=1, before_inject=engine.drain, record=True,
                          position_key=keys.replay_control)
        feed.seek(*saved)
        clock = ReplayClock(feed.clock_t, parse_speed(ctl.get("speed") or rec.get("speed") or "60"))
        if ctl.get("paused") == "1":
            clock.pause()
        self.active[ns] = _Drill(ns, keys, feed, clock, engine, rec.get("by", "system"), ZoneLocator(sc.zones))
        self._control(self.active[ns])
        log.warning("drill %s resumed at %d of %d", ns, feed.published, feed.total)

    def run(self, stop: threading.Event) -> None:
        """Serve drills until `stop`. Redis going away (down, timing out, loading, refusing writes) is
        waited out: back off, forget what is in memory (it may be ahead of what Redis committed),
        `resume` from Redis and go on. Any other error propagates."""
        failures = 0
        fresh = True
        while not stop.is_set():
            try:
                if fresh:
                    resumed = self.resume()
                    fresh = False
                    if resumed:
                        log.warning("drill runner: resumed %s", ", ".join(resumed))
                self.step()
                failures = 0
            except Exception as exc:
                err = as_unavailable(exc)
                if err is None:
                    raise
                failures += 1
                self.retries += 1
                first, cap = self.backoff
                delay = backoff_delay(failures, first=first, cap=cap, retry_after=getattr(err, "retry_after", None))
                log.warning("drill runner: %s (%s); resuming from Redis in %.2f s (failure %d in a row)",
                            err.message, type(exc).__name__, delay, failures)
                self.active.clear()
                fresh = True
                stop.wait(delay)
