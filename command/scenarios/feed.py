"""The scenario replay feed: a feed like any other, whose source is a scenario folder and whose pace
is a replay clock (`command.scenarios.clock`).

It writes the same entries to the same sharded streams as the live feeds, so a drill runs the very
same engine, rules and recommendations as live operation; only the namespace differs.

With a `position_key` (the drill runner's), every write of a chunk (the stream entries, the injects'
events, resources and dead letters, the namespace clock) and the feed's position after them land in
one MULTI/EXEC, so after a crash or a lost connection the feed goes on from the saved position
(`saved_position`, `seek`): an entry is never published twice nor skipped.

Injects are checked as everything else from outside is: an incident by the one incident validator
(`load.inject_incident`), a reading's value by `command.values.clean_number`. A bad inject is
quarantined (the dead-letter stream) with the reason, and the replay goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from command.errors import InvalidInput
from command.geo import ZoneLocator
from command.keys import Keys
from command.models import Resource, ResourceStatus
from command.scenarios.actions import Action, apply_action
from command.scenarios.clock import ReplayClock
from command.scenarios.load import Inject, Scenario, inject_incident
from command.scenarios.namespaces import deadletter
from command.streams import StreamWriter
from command.timeutil import to_iso
from command.units import UnitError, factor_for
from command.values import clean_number

# Events at the same instant are applied in this order: readings, then incidents and injects, then
# the clock tick, so a tick sees every reading of its instant.
_ORDER_INJECT, _ORDER_TICK = 1, 2


@dataclass
class _Event:
    t: int
    order: int
    kind: str  # incident, inject, tick
    payload: Any


class ReplayFeed:
    """Publishes a scenario's timeline to the namespace's streams, in time order."""

    def __init__(self, r: redis.Redis, keys: Keys, sc: Scenario, shards: int,
                 before_inject: Callable[[], object] | None = None, record: bool = False,
                 position_key: str | None = None) -> None:
        self.r, self.keys, self.sc = r, keys, sc
        # position_key: a hash where the position is saved with each chunk, in the chunk's transaction
        self.position_key = position_key
        self.writer = StreamWriter(r, keys, shards, record=record, transaction=position_key is not None)
        self.before_inject = before_inject
        self._locator: ZoneLocator | None = None  # made at the first incident inject
        rd = sc.readings
        self._rt: list[int] = rd["t"].tolist()
        self._rs: list[str] = rd["station_id"].tolist()
        self._rk: list[str] = rd["kind"].tolist()
        self._rv: list[float] = rd["value"].tolist()
        events: list[_Event] = [_Event(i.time, _ORDER_INJECT, "incident", i) for i in sc.incidents]
        events += [_Event(j.at, _ORDER_INJECT, "inject", j) for j in sc.injects]
        events += [_Event(a.at, _ORDER_INJECT, "action", a) for a in sc.actions]
        end = sc.end
        t = sc.start
        while t <= end:
            events.append(_Event(t, _ORDER_TICK, "tick", t))
            t += sc.tick_ms
        if (end - sc.start) % sc.tick_ms:
            events.append(_Event(end, _ORDER_TICK, "tick", end))  # a last tick at the very end
        events.sort(key=lambda e: (e.t, e.order))
        self._events = events
        self._i = 0  # next reading
        self._j = 0  # next other event
        self.published = 0
        self.total = len(self._rt) + len(events)
        self.clock_t = sc.start

    # ---- the saved position: what has been published, by index into the timeline ---------------------
    def position(self, events: int | None = None) -> dict[str, int]:
        return {"feed_readings": self._i, "feed_events": self._j if events is None else events,
                "feed_clock": self.clock_t}

    @staticmethod
    def saved_position(r: redis.Redis, position_key: str) -> tuple[int, int, int] | None:
        """(readings, events, clock) saved under `position_key`, or None when nothing was saved."""
        raw = r.hmget(position_key, ["feed_readings", "feed_events", "feed_clock"])
        if raw[0] is None or raw[1] is None:
            return None
        return int(raw[0]), int(raw[1]), int(raw[2]) if raw[2] is not None else 0

    def seek(self, readings: int, events: int, clock: int | None = None) -> None:
        """Go on after the first `readings` readings and `events` other events of the timeline."""
        if not (0 <= readings <= len(self._rt) and 0 <= events <= len(self._events)):
            raise ValueError(f"position {readings}/{events} is outside the timeline "
                             f"({len(self._rt)} readings, {len(self._events)} events)")
        self._i, self._j = readings, events
        self.published = readings + events  # one timeline item per reading or event
        self.clock_t = max(self.sc.start, clock or 0)

    def save_position(self) -> None:
        """Write the current position by itself (a drill's first, before anything is published)."""
        if self.position_key is not None:
            self.r.hset(self.position_key, mapping=self.position())

    def _flush(self, events: int | None = None) -> None:
        """Write what is buffered. With a position key, the position (`events`: as if only that many
        events were consumed) and the namespace clock go in the same transaction."""
        w = self.writer
        if self.position_key is not None:
            w.pipe.hset(self.position_key, mapping=self.position(events))
            w.pipe.set(self.keys.clock, self.clock_t)
        if not w.flush() and len(w.pipe):  # it executes only when entries are pending
            w.pipe.execute()

    @property
    def done(self) -> bool:
        return self._i >= len(self._rt) and self._j >= len(self._events)

    def next_time(self) -> int | None:
        a = self._rt[self._i] if self._i < len(self._rt) else None
        b = self._events[self._j].t if self._j < len(self._events) else None
        if a is None:
            return b
        if b is None:
            return a
        return min(a, b)

    def publish_until(self, t_limit: int | None, max_entries: int = 5000) -> int:
        """Publish every event at or before `t_limit` (None: no limit), at most `max_entries`."""
        w = self.writer
        n = 0
        rt, rs, rk, rv, ev = self._rt, self._rs, self._rk, self._rv, self._events
        nr, ne = len(rt), len(ev)
        while n < max_entries:
            ti = rt[self._i] if self._i < nr else None
            e = ev[self._j] if self._j < ne else None
            # readings first at the same instant
            if ti is not None and (e is None or ti <= e.t):
                if t_limit is not None and ti > t_limit:
                    break
                w.reading(rs[self._i], rk[self._i], ti, rv[self._i])
                self._i += 1
                self.clock_t = max(self.clock_t, ti)
            elif e is not None:
                if t_limit is not None and e.t > t_limit:
                    break
                self._j += 1
                self.clock_t = max(self.clock_t, e.t)
                if e.kind == "tick":
                    w.tick(e.payload)
                elif e.kind == "incident":
                    w.incident(e.payload)
                elif e.kind == "action":
                    self._action(e.payload)
                else:
                    self._inject(e.payload)
            else:
                break
            n += 1
        self.published += n
        if self.position_key is None:
            self._flush()
            self.r.set(self.keys.clock, self.clock_t)
        elif n:
            self._flush()
        return n

    def _action(self, act: Action) -> None:
        """A scripted action (command/scenarios/actions.py), once the engine has caught up with
        everything before it (what came before lands now, saved as not yet past this action), applied
        through the dashboard's commands at the action's time."""
        self._flush(events=self._j - 1)
        if self.before_inject:
            self.before_inject()
        if self.position_key is None:
            self.r.set(self.keys.clock, self.clock_t)
        why = apply_action(self.r, self.keys, act, act.at)
        if why:
            deadletter(self.r, self.keys, "action", {"type": act.type, **act.data}, f"{act.where}: {why}",
                       at=to_iso(act.at))

    def _inject(self, inj: Inject) -> None:
        k = self.keys
        if inj.type == "resource_status":
            # resources change what the engine recommends: let it catch up to this instant first
            # (what came before lands now, saved as not yet past this inject)
            self._flush(events=self._j - 1)
            if self.before_inject:
                self.before_inject()
        out = self.writer.pipe  # every write of an inject lands with the chunk (and its saved position)
        out.xadd(k.events, {"type": inj.type, "at": inj.at, "data": orjson.dumps(inj.data, default=str)})
        if inj.type == "incident":
            if self._locator is None:
                self._locator = ZoneLocator(self.sc.zones)
            try:
                self.writer.incident(inject_incident(inj.data, inj.at, self._locator))
            except InvalidInput as exc:
                deadletter(out, k, "inject", inj.data, exc.message, at=to_iso(inj.at))
        elif inj.type == "reading":
            d = inj.data
            sid, kind = str(d["station_id"]), str(d["kind"])
            try:
                if sid not in self.sc.stations:
                    raise ValueError(f"unknown station {sid!r}")
                factor, _ = factor_for(str(d["unit"]), kind)
                value = clean_number(d["value"]) * factor
            except InvalidInput as exc:
                deadletter(out, k, "inject", d, exc.message, at=to_iso(inj.at))
                return
            except (ValueError, UnitError) as exc:
                deadletter(out, k, "inject", d, str(exc), at=to_iso(inj.at))
                return
            self.writer.reading(sid, kind, inj.at, value)
        elif inj.type == "resource_status":
            rid = str(inj.data["resource_id"])
            raw = self.r.hget(k.resources, rid)
            try:
                if raw is None:
                    raise ValueError(f"unknown resource {rid!r}")
                res = Resource.model_validate_json(raw)
                res.status = ResourceStatus(str(inj.data["status"]))
            except ValueError as exc:
                deadletter(out, k, "inject", inj.data, str(exc), at=to_iso(inj.at))
                return
            out.hset(k.resources, rid, res.model_dump_json())

    def run(self, clock: ReplayClock, on_progress: Callable[[ReplayFeed], None] | None = None,
            after_publish: Callable[[], object] | None = None, chunk: int = 5000,
            stop: Callable[[], bool] | None = None) -> None:
        """Publish the whole timeline paced by `clock`; `after_publish` runs after each chunk."""
        while not self.done and not (stop and stop()):
            now = clock.now()
            n = self.publish_until(now, max_entries=chunk)
            if after_publish:
                after_publish()
            if on_progress:
                on_progress(self)
            if n == 0 and now is not None:
                nxt = self.next_time()
                if nxt is not None and clock.speed:
                    wait = (nxt - now) / 1000 / clock.speed
                    time.sleep(min(max(wait, 0.001), 0.2))
