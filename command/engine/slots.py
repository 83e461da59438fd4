"""The engine's writes by hash slot: one server, or a Redis Cluster.

A shard's input stream, rule state, lease and outputs outbox carry the shard's hash tag
(``{ns:sN}``); the namespace's alerts, recommendations and road closures carry the namespace's
(``{ns}``), so every reader of the namespace finds them in one place (command/keys.py).

- One server (and the embedded one): a batch's outputs (`Outputs`) are written inside the engine's
  commit, one MULTI/EXEC with the rule state and the XACK, as always (`write`).
- A Redis Cluster: a transaction cannot span two slots, so the commit writes the batch's outputs as
  one entry of the shard's outbox (`stage`, in the shard's slot, with the state and the XACK), then
  `apply_pending` copies the outbox entries not yet applied into the namespace's keys, in a second
  transaction in the namespace's slot that also moves the shard's cursor (`Keys.outputs_applied`).

Why the split loses nothing and doubles nothing: the outbox entry commits atomically with the state
and the XACK, so a batch's outputs exist exactly when its input is acknowledged; the cursor moves in
the same transaction as the writes it covers and is WATCHed, so an entry is applied once, whoever
applies it (the engine right after its commit, or the next owner of the shard when it takes it over
after a crash between the two transactions). Entries are applied in commit order per shard.

A failover can lose the last writes a dying master acknowledged (Redis replicates asynchronously).
So each of the two steps waits for a replica to hold the step before the next one builds on it
(`replicated`, Redis's WAIT): the outbox entry is applied only once a replica of the shard's master
has it, and applied entries are trimmed only once a replica of the namespace's master has the
apply. A master that dies before that confirmation makes the step fail, and the engine resumes from
what the promoted replica holds (docs/architecture.md, Redis Cluster: what a failover can lose).

The recommendations ride in the same entries. Each is the whole current plan for its alert (a SET
that replaces the one before), re-planned over the namespace's open alerts as applied before the
batch. Writing them in their own transaction adds no race that one server does not have: there
too two engines' batches re-plan from what each read before the other's commit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from redis.cluster import RedisCluster

from command.keys import ENGINE_GROUP, Keys, sync_probe

ALERTS_MAXLEN = 200_000  # alert and recommendation event streams, trimmed approximately
APPLY_CHUNK = 200  # outbox entries per apply transaction
REPLICA_WAIT_MS = 1000  # how long a step waits for a replica to confirm it (then goes on, logged)
OUTBOX_FIELD = b"o"


log = logging.getLogger(__name__)


def replicated(r: Any, key: str, timeout_ms: int = REPLICA_WAIT_MS) -> bool:
    """Do the replicas of `key`'s master hold every write made to it so far (WAIT)? True at once when
    that master has no replica (nothing to wait for). WAIT counts the writes of its own connection,
    so a probe key in the same slot is written first on that connection: the replication stream is
    ordered, so a replica that has the probe has all before it. False (logged) when no replica
    confirmed within `timeout_ms`: the caller goes on, the window stays open (docs)."""
    slot = r.keyslot(key)
    holders = r.nodes_manager.slots_cache.get(slot) or []
    if len(holders) < 2:
        return True
    node = holders[0]
    with node.redis_connection.pipeline(transaction=False) as p:
        p.set(sync_probe(key), b"1", px=60_000)
        p.wait(1, timeout_ms)
        _, n = p.execute()
    if not n:
        log.warning("no replica of %s confirmed the writes of slot %d within %d ms", node.name, slot, timeout_ms)
    return bool(n)


def split_commit(r: Any) -> bool:
    """Does `r` talk to a Redis Cluster (so a shard's commit and the namespace's writes are apart)?"""
    return isinstance(r, RedisCluster)


@dataclass
class Outputs:
    """What one batch writes to the namespace: alert events in order, alerts whose value moved
    without an event (their newest copy), recommendations as JSON, road closure records."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    touched: list[dict[str, Any]] = field(default_factory=list)
    recommendations: list[tuple[str, str]] = field(default_factory=list)  # (fingerprint, JSON)
    closures: dict[str, dict[str, Any]] = field(default_factory=dict)

    def dumps(self) -> bytes:
        return orjson.dumps({"e": self.events, "t": self.touched, "r": self.recommendations, "c": self.closures})

    @classmethod
    def loads(cls, raw: bytes) -> Outputs:
        d = orjson.loads(raw)
        return cls([(e, a) for e, a in d["e"]], d["t"], [(fp, j) for fp, j in d["r"]], d["c"])

    def __bool__(self) -> bool:
        return bool(self.events or self.touched or self.recommendations or self.closures)


def write(pipe: Any, k: Keys, out: Outputs) -> None:
    """Queue the namespace's writes of `out` on `pipe` (inside a MULTI)."""
    dumps = orjson.dumps
    for event, a in out.events:
        fp = a["fingerprint"]
        blob = dumps(a)
        pipe.set(k.alert(fp), blob)  # an open alert's live copy below supersedes this
        if event == "open":
            pipe.zadd(k.alerts_index, {fp: a["opened_at"]})
            pipe.zadd(k.alerts_open, {fp: a["opened_at"]})
        elif event == "resolve":
            pipe.zrem(k.alerts_open, fp)
        pipe.xadd(k.alerts_stream, {"event": event, "fingerprint": fp, "alert": blob},
                  maxlen=ALERTS_MAXLEN, approximate=True)
    for a in out.touched:  # after the events: the newest state wins
        pipe.set(k.alert(a["fingerprint"]), dumps(a))
    for fp, rec_blob in out.recommendations:
        pipe.set(k.recommendation(fp), rec_blob)
        pipe.xadd(k.recommendations_stream, {"fingerprint": fp, "recommendation": rec_blob},
                  maxlen=ALERTS_MAXLEN, approximate=True)
    if out.closures:
        pipe.hset(k.road_closures, mapping={i: dumps(c) for i, c in out.closures.items()})


def stage(pipe: Any, k: Keys, shard: int, out: Outputs) -> None:
    """Queue `out` as one entry of the shard's outbox (inside the shard's commit; cluster only)."""
    if out:
        pipe.xadd(k.shard_outputs(shard), {OUTBOX_FIELD: out.dumps()})


def apply_pending(r: Any, k: Keys, shard: int) -> int:
    """Apply the shard's outbox entries after its cursor to the namespace's keys (module text); returns
    how many. Safe to call from any process at any time: the WATCHed cursor makes each entry land once."""
    outbox, field_ = k.shard_outputs(shard), str(shard)
    applied = 0
    while True:
        with r.pipeline() as pipe:
            try:
                pipe.watch(k.outputs_applied)
                last = pipe.hget(k.outputs_applied, field_)
                # the outbox is in the shard's slot: read on the client, not the namespace's pipeline
                entries = r.xrange(outbox, min=f"({last.decode()}" if last else "-", count=APPLY_CHUNK)
                if not entries:
                    return applied
                pipe.multi()
                for _eid, fields in entries:
                    write(pipe, k, Outputs.loads(fields[OUTBOX_FIELD]))
                newest = entries[-1][0]
                pipe.hset(k.outputs_applied, field_, newest)
                pipe.execute()
            except redis.WatchError:
                continue  # another process applied some: read the cursor again
        applied += len(entries)
        # what is applied is no longer needed once a replica holds the apply (a failover could otherwise
        # roll the cursor back with nothing left to apply again); the newest entry stays: harmless
        if replicated(r, k.outputs_applied):
            r.xtrim(outbox, minid=newest)


def _raw_command(r: Any, *args: Any) -> Any:
    """One command's reply as the server sent it, without redis-py's response callback (for
    XREADGROUP that callback builds a dict per entry: a third of the engine's read cost). The
    connection's own retry policy applies, as in `Redis.execute_command`; a connection that failed
    is dropped, never returned to the pool with a reply left unread on it."""
    pool = r.connection_pool
    conn = pool.get_connection()

    def send_read() -> Any:
        conn.send_command(*args)
        return conn.read_response()

    try:
        return conn.retry.call_with_retry(send_read, lambda _err: conn.disconnect())
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)


def flat(entries: list) -> list:
    """Parsed entries, (id, {field: value}), as the server sends them: [id, [field, value, ...]]."""
    return [[eid, [x for kv in fields.items() for x in kv]] for eid, fields in entries]


def _read_args(consumer: str, streams: dict[str, str], count: int, block_ms: int | None) -> list[Any]:
    args: list[Any] = ["XREADGROUP", "GROUP", ENGINE_GROUP, consumer, "COUNT", count]
    if block_ms is not None:
        args += ["BLOCK", block_ms]
    return [*args, "STREAMS", *streams, *streams.values()]


def _pairs(resp: Any) -> list:
    """An XREADGROUP reply as [(stream, entries)]: RESP3 answers a map, RESP2 a list of pairs, nil for nothing."""
    if not resp:
        return []
    return list(resp.items()) if isinstance(resp, dict) else resp


def read_groups(r: Any, consumer: str, streams: dict[str, str], count: int, block_ms: int | None) -> list:
    """XREADGROUP over the shard streams an engine owns: [(stream name, entries)], each entry as the
    server sends it, ``[id, [field, value, ...]]`` (no dict per entry). One command on one server; on
    a cluster one per stream (a multi-key command cannot span slots), pipelined without blocking, then
    a pause of `block_ms` when nothing came (so an idle engine does not spin)."""
    if not split_commit(r):
        return _pairs(_raw_command(r, *_read_args(consumer, streams, count, block_ms)))
    if len(streams) == 1:
        got = [r.xreadgroup(ENGINE_GROUP, consumer, streams, count=count, block=block_ms)]
    else:
        with r.pipeline(transaction=False) as p:
            for s, start in streams.items():
                p.xreadgroup(ENGINE_GROUP, consumer, {s: start}, count=count)
            got = p.execute()
    resp = [(name, flat(entries)) for one in got for name, entries in _pairs(one)]
    if block_ms and len(streams) > 1 and not any(entries for _, entries in resp):
        time.sleep(block_ms / 1000)
    return resp


class ReadAhead:
    """The next XREADGROUP (no BLOCK), sent on a connection of its own and answered later (`result`),
    so that the server gathers the next batch while this process evaluates and commits the current
    one. One server only (`split_commit` false).

    It is fenced by the shard leases like a commit: WATCH on the leases, read them, and only for the
    streams whose lease is `consumer`'s, MULTI/XREADGROUP/EXEC (sent, not waited for). An engine that
    lost a shard meanwhile gets nothing (EXEC aborts), so it never takes entries it would leave
    pending under its name. What it does deliver is pending for `consumer` from then on, like any
    read: an engine that stops or fails before using it leaves it to XAUTOCLAIM (its own after
    `Engine.forget`, or the next owner's on taking the shard)."""

    def __init__(self, r: Any, consumer: str, leases: dict[str, str], count: int) -> None:
        """`leases`: shard stream -> its lease key."""
        self._pool = r.connection_pool
        self._conn: Any = self._pool.get_connection()
        try:
            conn = self._conn
            conn.send_packed_command(conn.pack_commands([("WATCH", *leases.values()), ("MGET", *leases.values())]))
            conn.read_response()
            held = conn.read_response()
            me = consumer.encode()
            streams = {s: ">" for s, v in zip(leases, held, strict=True) if v == me}
            if not streams:
                conn.send_command("UNWATCH")
                conn.read_response()
                self._pool.release(conn)
                self._conn = None
                return
            conn.send_packed_command(conn.pack_commands(
                [("MULTI",), tuple(_read_args(consumer, streams, count, None)), ("EXEC",)]))
        except BaseException:
            self.discard()
            raise

    def result(self) -> list:
        """The reply, as `read_groups` gives it ([] when a lease was no longer ours)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return []
        try:
            conn.read_response()  # MULTI: OK
            conn.read_response()  # XREADGROUP: QUEUED
            got = conn.read_response()  # EXEC: [the reply], or nil when a lease changed
            return _pairs(got[0]) if got else []
        except BaseException:
            conn.disconnect()  # the reply's state is unknown: never back in the pool as it is
            raise
        finally:
            self._pool.release(conn)

    def discard(self) -> None:
        """Drop the read unanswered (its connection closed: the replies are never read)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()
            self._pool.release(conn)
