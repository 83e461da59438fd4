"""The rule engine's consumer loop: sharded input streams in, alerts and recommendations out.

The evaluation itself is `rules.ShardEvaluator` (pure); this module is the Redis edge:

- an engine owns whole shards through a lease (``SET NX PX``), so two engines never evaluate the
  same station; an engine that stops renewing loses its shards to another;
- engines on any number of machines share a namespace's shards: each announces itself (a heartbeat
  key with the lease's TTL) and holds its fair share (`command.engine.balance`), giving extra shards
  back between batches and taking free ones below its share;
- it reads a shard in batches (XREADGROUP), evaluates, then commits in one MULTI/EXEC: the rule
  state of the subjects it touched, the alerts, the recommendations and the XACK of the batch.
  The commit is fenced by WATCH on the lease, so an engine that lost its shard cannot write;
- on taking a shard it loads the committed rule state and first re-processes the entries still
  pending (XAUTOCLAIM), i.e. those delivered to a consumer that died before committing.

Because state, outputs and ACK land together or not at all, a crash at any point neither loses a
reading nor doubles an alert.

`Engine.run` is the loop's edge for errors: a retryable one (`command.errors.CommandError.retryable`,
and Redis being down, translated to `Unavailable` there by `command.errors.unavailable_from`) backs
off (bounded exponential with jitter) and goes on, after dropping what it held in memory so that it
resumes from the committed state; any other error propagates.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from command.config import DEFAULT_ENGINE_BATCH
from command.engine import slots
from command.engine.balance import plan
from command.engine.plan_inputs import engine_recommendations
from command.engine.verification import verification_step
from command.errors import NotFound, unavailable_from
from command.keys import ENGINE_GROUP, Keys, shard_of
from command.models import ExternalWarning, Incident, Resource, Station, Zone
from command.ops.dispatch import queue_verdict
from command.rules import AlertChange, RuleSet, ShardEvaluator, parse_rules
from command.runtime.redis_client import as_unavailable
from command.streams import ensure_group, field_map, shard_count, tick_entry, trim_acknowledged
from command.timeutil import now_ms

log = logging.getLogger(__name__)
CLOCK_FIELD = "~clock"  # the shard state hash's field for the shard clock (never a subject id)
ALERTS_MAXLEN = slots.ALERTS_MAXLEN
BACKOFF_FIRST_S = 0.1  # the wait after the first failure in a row; it doubles with each one after ...
BACKOFF_MAX_S = 10.0  # ... up to this


def backoff_delay(failures: int, *, first: float = BACKOFF_FIRST_S, cap: float = BACKOFF_MAX_S,
                  retry_after: float | None = None, rand: Callable[[], float] = random.random) -> float:
    """The wait after the `failures`-th failure in a row (1, 2, ...): ``first * 2**(failures-1)``,
    at most `cap`, then jittered to between half and all of it (so engines that lost Redis together
    do not come back in step); never less than the error's `retry_after`, when it gives one."""
    base = min(cap, first * 2 ** min(max(failures - 1, 0), 30))
    delay = base * (0.5 + 0.5 * rand())
    return max(delay, retry_after or 0.0)


@contextmanager
def _batch_without_gc() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a batch is read and evaluated. A batch allocates
    tens of thousands of short-lived objects (the parsed entries, points, outputs) and makes no
    reference cycles, yet each few hundred allocations would start a collection, and the older
    generations' ones scan the whole rule state (and whatever else the process holds): about 30 %
    of the engine's CPU per entry in bench/engine.py (docs/performance.md). Reference counting still
    frees everything at once; the collector runs as usual between batches (the batch's commit is
    inside it too). Left as it was when a caller (or another thread) turned it off already."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class ShardLost(RuntimeError):
    """Another engine holds the shard now (our lease expired)."""


@dataclass
class OwnedShard:
    index: int
    stream: str
    state_key: str
    lease_key: str
    evaluator: ShardEvaluator
    reclaimed: bool = False


@dataclass
class Registry:
    """What the rules need to know besides the readings: loaded from the namespace."""

    ruleset: RuleSet
    stations: dict[str, Station]
    zones: dict[str, Zone]
    version: bytes | None = None


def load_registry(r: redis.Redis, keys: Keys) -> Registry:
    raw_rules = r.get(keys.rules)
    if raw_rules is None:
        raise NotFound(f"namespace {keys.ns!r} has no rules loaded (run a replay or load a configuration)",
                       field="namespace")
    ruleset = parse_rules(orjson.loads(raw_rules), source=keys.rules)
    stations = {k.decode(): Station.model_validate_json(v) for k, v in r.hgetall(keys.stations).items()}
    zones = {k.decode(): Zone.model_validate_json(v) for k, v in r.hgetall(keys.zones).items()}
    return Registry(ruleset, stations, zones, r.hget(keys.meta, "registry_version"))


class Engine:
    def __init__(self, r: redis.Redis, keys: Keys, *, consumer: str | None = None, batch: int = DEFAULT_ENGINE_BATCH,
                 block_ms: int = 200, lease_ms: int = 10_000, max_shards: int | None = None,
                 live_tick_s: float | None = None, clock: Callable[[], int] = now_ms,
                 backoff: tuple[float, float] = (BACKOFF_FIRST_S, BACKOFF_MAX_S),
                 trim_every_s: float | None = None, read_ahead: bool = True) -> None:
        self.r, self.keys = r, keys
        # every this many seconds, trim the owned input streams below what every group acknowledged
        # (None: never; a headless replay keeps its input for whoever reads it afterwards)
        self.trim_every_s = trim_every_s
        self._last_trim = time.monotonic()
        self.trimmed = 0
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.batch, self.block_ms, self.lease_ms = batch, block_ms, lease_ms
        self.max_shards = max_shards
        self.live_tick_s = live_tick_s  # live mode: emit clock ticks from the wall clock
        self.clock = clock
        self.shards: dict[int, OwnedShard] = {}
        self.registry: Registry | None = None
        self.nshards = 0
        self.processed = 0
        self.alert_events = 0
        self.backoff = backoff  # (first wait, longest wait) in seconds after a retryable error
        self.retries = 0  # retryable errors `run` backed off from, in all
        self._last_lease_check = 0.0
        self._last_tick = 0.0
        self._forgotten: set[int] = set()  # shards dropped by `forget` whose lease may still be ours
        # read the next batch while the current one is evaluated (one server only; slots.ReadAhead)
        self.read_ahead = read_ahead
        self._ahead: slots.ReadAhead | None = None

    # ---- shard ownership ------------------------------------------------------------------------
    def start(self) -> None:
        self.registry = load_registry(self.r, self.keys)
        self.nshards = shard_count(self.r, self.keys)
        self._heartbeat()
        self._balance()

    def _heartbeat(self) -> None:
        """Announce this engine (command/engine/balance.py counts the live ones). Written before the
        leases are renewed, so a stopped engine's heartbeat expires before its leases do and its
        shards are never free while it still counts as alive."""
        beat = orjson.dumps({"host": socket.gethostname(), "pid": os.getpid(), "max_shards": self.max_shards})
        with self.r.pipeline(transaction=False) as pipe:
            pipe.set(self.keys.engine_heartbeat(self.consumer), beat, px=self.lease_ms)
            pipe.sadd(self.keys.engines, self.consumer)
            pipe.execute()

    def live_engines(self) -> dict[str, int | None]:
        """The engines whose heartbeat is current, each with its cap (--max-shards); the names whose
        heartbeat expired are dropped from the index."""
        names = sorted(m.decode() for m in self.r.smembers(self.keys.engines))
        with self.r.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(self.keys.engine_heartbeat(name))
            beats = pipe.execute()
        live: dict[str, int | None] = {}
        for name, beat in zip(names, beats, strict=True):
            if beat is not None:
                cap = orjson.loads(beat).get("max_shards")
                live[name] = cap if isinstance(cap, int) else None
        gone = [n for n in names if n not in live]
        if gone:
            self.r.srem(self.keys.engines, *gone)
        return live

    def lease_owners(self) -> dict[int, str | None]:
        """Shard -> the consumer holding its lease (None: free)."""
        with self.r.pipeline(transaction=False) as pipe:
            for s in range(self.nshards):
                pipe.get(self.keys.shard_lease(s))
            held = pipe.execute()
        return {s: v.decode() if v is not None else None for s, v in enumerate(held)}

    def _balance(self) -> None:
        """Hold this engine's fair share (command/engine/balance.py): give back shards above it, try
        free ones below it. Runs between batches (from `poll`), so a shard is given back only after
        its last batch committed, never in the middle of a commit."""
        live = self.live_engines()
        live[self.consumer] = self.max_shards
        owners = self.lease_owners()
        decision = plan(self.consumer, self.nshards, owners, live, caps=live)
        for s in decision.release:
            self._give_back(s)
            log.info("engine %s gave shard %d of %s back (its share is %d of %d shards, %d engines)",
                     self.consumer, s, self.keys.ns, decision.target, self.nshards, len(live))
        # a restarted engine with the same consumer name (or one that forgot after an error) resumes
        # the shards whose lease is still its own at once
        for s, owner in owners.items():
            if owner == self.consumer and s not in self.shards and s not in decision.release:
                self._take(s)
        won = 0
        for s in decision.take:
            if won >= decision.want:
                break
            if self.r.set(self.keys.shard_lease(s), self.consumer, nx=True, px=self.lease_ms):
                self._take(s)
                won += 1

    def _give_back(self, s: int) -> None:
        """Delete shard `s`'s lease if it is still ours, and stop evaluating it."""
        lease_key = self.keys.shard_lease(s)
        self.shards.pop(s, None)
        self._forgotten.discard(s)
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(lease_key)
                if pipe.get(lease_key) == self.consumer.encode():
                    pipe.multi()
                    pipe.delete(lease_key)
                    pipe.execute()
            except redis.WatchError:
                pass

    def _take(self, s: int) -> None:
        stream = self.keys.shard_stream(s)
        ensure_group(self.r, stream)
        reg = self.registry
        assert reg is not None
        mine = {sid for sid in reg.stations if shard_of(sid, self.nshards) == s}
        zones = {zid for zid in reg.zones if shard_of(zid, self.nshards) == s}
        ev = ShardEvaluator(reg.ruleset, reg.stations, reg.zones, shard_stations=mine, shard_zones=zones)
        if slots.split_commit(self.r):  # outputs a crashed owner committed but did not apply (cluster)
            slots.apply_pending(self.r, self.keys, s)
        raw = self.r.hgetall(self.keys.shard_state(s))
        clock = raw.pop(CLOCK_FIELD.encode(), None)
        ev.load({k.decode(): orjson.loads(v) for k, v in raw.items()}, orjson.loads(clock) if clock else None)
        self.shards[s] = OwnedShard(s, stream, self.keys.shard_state(s), self.keys.shard_lease(s), ev)
        log.info("engine %s took shard %d of %s (%d subjects resumed)", self.consumer, s, self.keys.ns, len(raw))

    def _drop(self, s: int) -> None:
        log.warning("engine %s lost shard %d of %s", self.consumer, s, self.keys.ns)
        self.shards.pop(s, None)

    def release(self) -> None:
        """Give the shards up at once (a clean stop), so another engine need not wait for the lease
        (those it holds, and those it forgot but may still hold the lease of). With Redis down the
        leases cannot be given back: they expire by themselves."""
        self._drop_read_ahead()  # what it delivered is pending: the next owner of each shard reclaims it
        try:
            # no longer counted among the live engines: the others take our shares at once
            with self.r.pipeline(transaction=False) as pipe:
                pipe.delete(self.keys.engine_heartbeat(self.consumer))
                pipe.srem(self.keys.engines, self.consumer)
                pipe.execute()
            held = sorted(set(self.shards) | self._forgotten)
            for s in held:
                self._give_back(s)
            if held:
                log.info("engine %s gave shards %s of %s back on stopping", self.consumer, held, self.keys.ns)
        except redis.RedisError as exc:
            if unavailable_from(exc) is None:
                raise
            log.warning("engine %s could not give its shards back (%s): their leases will expire",
                        self.consumer, exc)
        self.shards.clear()
        self._forgotten.clear()

    def forget(self) -> None:
        """Drop what the engine holds in memory (shards, evaluators), keeping its leases: the next
        poll takes its shards again from the committed state and first re-processes what is still
        pending. After an error mid-batch, memory may be ahead of what was committed."""
        self._forgotten |= set(self.shards)
        self.shards.clear()
        self._last_lease_check = 0.0
        self._drop_read_ahead()  # its connection may be broken; what it delivered is reclaimed on taking the shards again

    def _renew_leases(self) -> None:
        now = time.monotonic()
        if now - self._last_lease_check < self.lease_ms / 3000:
            return
        self._last_lease_check = now
        self._heartbeat()
        for s, sh in list(self.shards.items()):
            with self.r.pipeline() as pipe:
                try:
                    pipe.watch(sh.lease_key)
                    if pipe.get(sh.lease_key) != self.consumer.encode():
                        self._drop(s)
                        continue
                    pipe.multi()
                    pipe.pexpire(sh.lease_key, self.lease_ms)
                    pipe.execute()
                except redis.WatchError:
                    self._drop(s)
        self._check_registry()
        self._balance()

    def _check_registry(self) -> None:
        version = self.r.hget(self.keys.meta, "registry_version")
        if self.registry is not None and version != self.registry.version:
            # stations or rules changed: evaluators keep their state but re-plan with the new registry
            self.registry = load_registry(self.r, self.keys)
            reg = self.registry
            for s, sh in self.shards.items():
                mine = {sid for sid in reg.stations if shard_of(sid, self.nshards) == s}
                zones = {zid for zid in reg.zones if shard_of(zid, self.nshards) == s}
                ev = ShardEvaluator(reg.ruleset, reg.stations, reg.zones, shard_stations=mine, shard_zones=zones)
                ev.state, ev.clock_start, ev.now, ev.late = (sh.evaluator.state, sh.evaluator.clock_start,
                                                             sh.evaluator.now, sh.evaluator.late)
                ev.dirty = sh.evaluator.dirty  # e.g. subjects migrated from an older state format
                sh.evaluator = ev

    # ---- the loop -------------------------------------------------------------------------------
    def poll(self, block_ms: int | None = None) -> int:
        """Process what is waiting (reclaimed entries first). Returns the number of entries handled."""
        self._renew_leases()
        if self.live_tick_s is not None:
            self._emit_live_tick()
        done = 0
        for sh in list(self.shards.values()):
            if not sh.reclaimed:
                done += self._reclaim(sh)
        if not self.shards:
            self._drop_read_ahead()
            if block_ms:
                time.sleep(block_ms / 1000)
            return done
        streams = {sh.stream: ">" for sh in self.shards.values()}
        with _batch_without_gc():
            # the batch read ahead during the last one (taken even if the shards changed since: what it
            # delivered is ours to process, or pending for the next owner of a shard given back)
            by_stream = {sh.stream.encode(): sh for sh in self.shards.values()}
            ahead, self._ahead = self._ahead, None
            resp = ahead.result() if ahead is not None else []
            if not any(entries for name, entries in resp if name in by_stream):
                resp = slots.read_groups(self.r, self.consumer, streams, self.batch, block_ms if block_ms else None)
            if (self.read_ahead and any(len(entries) >= self.batch for _, entries in resp)
                    and not slots.split_commit(self.r)):
                # a full batch: more is waiting. Ask for it now, so the server gathers it while this one
                # is evaluated and committed (its reply is read by the next poll)
                self._ahead = slots.ReadAhead(self.r, self.consumer, {sh.stream: sh.lease_key for sh in self.shards.values()},
                                              self.batch)
            entries: list = []
            for stream_name, entries in resp:
                owned = by_stream.get(stream_name)
                if owned is not None and entries:
                    done += self._handle(owned, entries)
            del resp, entries  # freed by reference counting, before the collector runs again
        if self.trim_every_s is not None and time.monotonic() - self._last_trim >= self.trim_every_s:
            self.trim_inputs()
        return done

    def _drop_read_ahead(self) -> None:
        """Forget the read sent ahead, unanswered: what it delivered stays pending (XAUTOCLAIM takes it)."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.discard()

    def trim_inputs(self) -> int:
        """Trim each owned input stream below what every consumer group acknowledged."""
        self._last_trim = time.monotonic()
        n = sum(trim_acknowledged(self.r, sh.stream) for sh in list(self.shards.values()))
        self.trimmed += n
        return n

    def _reclaim(self, sh: OwnedShard) -> int:
        """Re-process entries a dead consumer left pending, oldest first, before anything new."""
        done, cursor = 0, "0-0"
        while sh.index in self.shards:
            cursor, entries, *_ = self.r.xautoclaim(sh.stream, ENGINE_GROUP, self.consumer, min_idle_time=0,
                                                   start_id=cursor, count=self.batch)
            entries = slots.flat([e for e in entries if e is not None and e[1] is not None])
            if entries:
                log.info("engine %s reclaimed %d pending entries of shard %d", self.consumer, len(entries), sh.index)
                with _batch_without_gc():
                    done += self._handle(sh, entries)
            if cursor in (b"0-0", "0-0"):
                break
        sh.reclaimed = True
        return done

    def _emit_live_tick(self) -> None:
        assert self.live_tick_s is not None  # poll calls this only when live
        now = time.monotonic()
        if now - self._last_tick < self.live_tick_s:
            return
        self._last_tick = now
        t = self.clock()
        with self.r.pipeline(transaction=False) as pipe:
            for sh in self.shards.values():
                pipe.xadd(sh.stream, tick_entry(t))
            pipe.set(self.keys.clock, t)
            pipe.execute()

    def _handle(self, sh: OwnedShard, entries: list) -> int:
        """Evaluate a batch of entries, each ``[id, [field, value, ...]]`` as the server sends it
        (`slots.read_groups`), then commit it."""
        ev = sh.evaluator
        changes: list[AlertChange] = []
        incidents: list[Incident] = []  # in order: the road closures they open or end (planning)
        ids = [e[0] for e in entries]  # every entry is acknowledged, an unknown one too
        reading, on_tick = ev.reading, ev.on_tick
        loads = orjson.loads
        extend = changes.extend
        for eid, fields in entries:
            # an entry has one field (command/streams.py): look at the first, no dict per entry
            name = fields[0]
            if name == b"r" and len(fields) == 2:
                out = reading(*loads(fields[1]))  # [station, kind, t, value]
                if out:
                    extend(out)
                continue
            f = field_map(fields)  # anything else: by name, as before
            raw = f.get(b"r")
            if raw is not None:
                out = reading(*loads(raw))
            elif (raw := f.get(b"t")) is not None:
                out = on_tick(int(raw))
            elif (raw := f.get(b"i")) is not None:
                inc = Incident.model_validate_json(raw)
                incidents.append(inc)
                out = ev.on_incident(inc)
            elif (raw := f.get(b"w")) is not None:
                out = ev.on_warning(ExternalWarning.model_validate_json(raw))
            elif (raw := f.get(b"f")) is not None:
                sid, kind, issued, series = loads(raw)
                out = ev.on_forecast(sid, kind, issued, series)
            else:
                log.warning("shard %d: entry %s has no known field, skipped", sh.index, eid)
                continue
            if out:
                extend(out)
        try:
            self._commit(sh, ids, changes, incidents, entries)
        except ShardLost:
            self._drop(sh.index)
            return 0
        self.processed += len(ids)
        self.alert_events += len(changes)
        return len(ids)

    def _resources(self) -> list[Resource]:
        return [Resource.model_validate_json(v) for v in self.r.hvals(self.keys.resources)]

    def _commit(self, sh: OwnedShard, ids: list, changes: list[AlertChange],
                incidents: list[Incident] | None = None, entries: list | None = None) -> None:
        ev, k = sh.evaluator, self.keys
        dirty = ev.export_dirty()
        dumps = orjson.dumps
        # alerts whose value moved without a lifecycle event: keep their stored copy current
        touched: dict[str, dict[str, Any]] = {}
        for sid in dirty:
            for ls in ev.state[sid].rules.values():
                if ls.alert is not None:
                    touched[ls.alert["fingerprint"]] = ls.alert
        # every lifecycle event re-plans the units over all open alerts (docs/dispatch.md)
        recs, closures = engine_recommendations(self.r, k, ev.rs, changes, incidents or [], self._resources)
        mapping = {sid: dumps(d) for sid, d in dirty.items()}
        mapping[CLOCK_FIELD] = dumps(ev.export_clock())
        while True:
            try:
                self._write(sh, ids, changes, touched, recs, closures, mapping, entries or [])
                return
            except redis.WatchError:
                # the lease, or a task watch the verification reads (a department completing a task)
                if self.r.get(sh.lease_key) != self.consumer.encode():
                    raise ShardLost(sh.index) from None

    def _write(self, sh: OwnedShard, ids: list, changes: list[AlertChange], touched: dict[str, dict[str, Any]],
               recs: list, closures: dict[str, dict[str, Any]], mapping: dict[str, bytes], entries: list) -> None:
        k, reg = self.keys, self.registry
        assert reg is not None  # started
        out = slots.Outputs([(c.event, c.alert) for c in changes], list(touched.values()),
                            [(rec.fingerprint, rec.model_dump_json()) for rec in recs], closures)
        if slots.split_commit(self.r):  # a Redis Cluster: the namespace's keys are in another slot
            self._write_split(sh, ids, out, mapping, entries, changes)
            return
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(sh.lease_key, k.verify_watch)
                if pipe.get(sh.lease_key) != self.consumer.encode():
                    raise ShardLost(sh.index)
                # completed tasks on the batch's stations: reopened or verified with it (verification.py);
                # what it reads is watched, so its verdicts land only on what it saw
                verify = verification_step(pipe, k, sh.evaluator.rs, reg.stations, sh.index, self.nshards,
                                           entries, changes, sh.evaluator.now)
                head = None
                if verify.tasks:
                    pipe.watch(k.audit_head)
                    head = pipe.get(k.audit_head)
                pipe.multi()
                pipe.hset(sh.state_key, mapping=mapping)
                slots.write(pipe, k, out)  # alerts, recommendations, closures (command/engine/slots.py)
                if verify:
                    h = head.decode() if head else None
                    for task in verify.tasks:
                        h = queue_verdict(pipe, k, task, h)
                    if verify.drop:
                        pipe.hdel(k.verify_watch, *verify.drop)
                    if verify.keep:
                        pipe.hset(k.verify_watch, mapping=verify.keep)
                pipe.xack(sh.stream, ENGINE_GROUP, *ids)
                pipe.pexpire(sh.lease_key, self.lease_ms)
                pipe.execute()
            finally:
                pipe.reset()

    def _write_split(self, sh: OwnedShard, ids: list, out: slots.Outputs, mapping: dict[str, bytes],
                     entries: list, changes: list[AlertChange]) -> None:
        """The commit on a Redis Cluster (command/engine/slots.py): the shard's transaction (state, the
        outputs as an outbox entry, XACK, lease), then the namespace's: the outbox applied, and the
        verification's read-decide-write over the namespace's tasks, tried again on its own when they
        changed meanwhile (the shard's part is committed and never written twice)."""
        k, reg = self.keys, self.registry
        assert reg is not None  # started
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(sh.lease_key)
                if pipe.get(sh.lease_key) != self.consumer.encode():
                    raise ShardLost(sh.index)
                pipe.multi()
                pipe.hset(sh.state_key, mapping=mapping)
                slots.stage(pipe, k, sh.index, out)
                pipe.xack(sh.stream, ENGINE_GROUP, *ids)
                pipe.pexpire(sh.lease_key, self.lease_ms)
                pipe.execute()
            except redis.WatchError:
                raise ShardLost(sh.index) from None
            finally:
                pipe.reset()
        if out:
            slots.replicated(self.r, sh.state_key)  # a replica holds the entry before the namespace builds on it
            slots.apply_pending(self.r, k, sh.index)
        while True:
            with self.r.pipeline() as pipe:
                try:
                    pipe.watch(k.verify_watch)
                    verify = verification_step(pipe, k, sh.evaluator.rs, reg.stations, sh.index, self.nshards,
                                               entries, changes, sh.evaluator.now)
                    if not verify:
                        return
                    head = None
                    if verify.tasks:
                        pipe.watch(k.audit_head)
                        head = pipe.get(k.audit_head)
                    pipe.multi()
                    h = head.decode() if head else None
                    for task in verify.tasks:
                        h = queue_verdict(pipe, k, task, h)
                    if verify.drop:
                        pipe.hdel(k.verify_watch, *verify.drop)
                    if verify.keep:
                        pipe.hset(k.verify_watch, mapping=verify.keep)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue  # a task or the audit chain moved: read and decide again
                finally:
                    pipe.reset()

    def drain(self, max_idle_polls: int = 1) -> int:
        """Process until nothing is waiting. For headless replays and tests."""
        total, idle = 0, 0
        while idle < max_idle_polls:
            n = self.poll(block_ms=None)
            total += n
            idle = idle + 1 if n == 0 else 0
        return total

    def run(self, stop: threading.Event, *, exit_when_idle: float | None = None,
            on_start: Callable[[Engine], None] | None = None) -> None:
        """The engine's life: start, poll until told to stop, give the shards back.

        `exit_when_idle`: also stop once nothing came for that many seconds (batch use).
        `on_start` is called once the engine holds its shards. Live ticks, if any, come from the
        engine's `live_tick_s`.

        A retryable error (Redis down, as `Unavailable`; any `CommandError` with `retryable`) is
        logged, the engine forgets its in-memory state (`forget`), waits (`backoff_delay`, cut short
        by `stop`) and tries again, starting included; the count of failures in a row resets at the
        first poll that works. Any other error propagates (after the shards are given back).
        """
        started = False
        failures = 0
        idle_since = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    if not started:
                        self.start()
                        started = True
                        if on_start is not None:
                            on_start(self)
                        idle_since = time.monotonic()
                    busy = self.poll(block_ms=self.block_ms)
                    failures = 0
                except Exception as exc:  # noqa: BLE001 - the edge: translated, then retried or re-raised
                    # Redis down, or refusing writes for now (memory full: command/runtime/redis_client.py)
                    err = as_unavailable(exc)  # a retryable CommandError as it is, Redis trouble as Unavailable
                    if err is None:
                        raise
                    failures += 1
                    self.retries += 1
                    first, cap = self.backoff
                    delay = backoff_delay(failures, first=first, cap=cap, retry_after=getattr(err, "retry_after", None))
                    log.warning("engine %s on %s: %s (%s); retry %d in %.2f s", self.consumer, self.keys.ns,
                                err.message, type(exc).__name__, failures, delay)
                    self.forget()
                    stop.wait(delay)
                    idle_since = time.monotonic()  # an outage is not idleness: count from its end
                    continue
                if busy:
                    idle_since = time.monotonic()
                elif exit_when_idle is not None and time.monotonic() - idle_since > exit_when_idle:
                    break
        finally:
            self.release()
