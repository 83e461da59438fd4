"""The wire format of the sharded input streams, shared by every feed and the engine.

One field per entry, named by its type, so an entry is cheap to write and to read:
- ``r``: a reading, JSON ``[station_id, kind, t_ms, value_si]``;
- ``i``: an incident, the Incident model as JSON;
- ``t``: a clock tick, ``t_ms`` (the engine evaluates silence on it).
"""

from __future__ import annotations

from typing import Any

import orjson
import redis

from .keys import ENGINE_GROUP, Keys, shard_of
from .models import Incident, Reading

READING, INCIDENT, TICK = b"r", b"i", b"t"


def reading_entry(station_id: str, kind: str, t: int, value: float) -> dict[str, bytes]:
    return {"r": orjson.dumps((station_id, kind, t, value))}


def incident_entry(inc: Incident) -> dict[str, bytes]:
    return {"i": inc.model_dump_json().encode()}


def tick_entry(t: int) -> dict[str, bytes]:
    return {"t": str(t).encode()}


def decode(fields: dict[bytes, bytes]) -> Reading | Incident | int | None:
    """An input entry as a Reading, an Incident or a tick time; None for an unknown entry type."""
    raw = fields.get(READING)
    if raw is not None:
        sid, kind, t, value = orjson.loads(raw)
        return Reading(sid, kind, t, value)
    raw = fields.get(TICK)
    if raw is not None:
        return int(raw)
    raw = fields.get(INCIDENT)
    if raw is not None:
        return Incident.model_validate_json(raw)
    return None


def shard_count(r: redis.Redis, keys: Keys, default: int = 1) -> int:
    """The namespace's shard count: fixed when the namespace is first used, so feeds and engines agree."""
    r.hsetnx(keys.meta, "shards", default)
    return int(r.hget(keys.meta, "shards"))


def ensure_group(r: redis.Redis, stream: str) -> None:
    """The engine consumer group, reading from the stream's very start (idempotent)."""
    try:
        r.xgroup_create(stream, ENGINE_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class StreamWriter:
    """Buffers input entries per shard and writes them with one pipelined round trip per flush."""

    def __init__(self, r: redis.Redis, keys: Keys, shards: int, maxlen: int | None = None) -> None:
        self.r, self.keys, self.shards, self.maxlen = r, keys, shards, maxlen
        self._pipe = r.pipeline(transaction=False)
        self.pending = 0

    def reading(self, station_id: str, kind: str, t: int, value: float) -> None:
        self._add(shard_of(station_id, self.shards), reading_entry(station_id, kind, t, value))

    def incident(self, inc: Incident) -> None:
        self._add(shard_of(inc.id, self.shards), incident_entry(inc))

    def tick(self, t: int) -> None:
        for s in range(self.shards):
            self._add(s, tick_entry(t))

    def _add(self, shard: int, fields: dict[str, Any]) -> None:
        kw = {"maxlen": self.maxlen, "approximate": True} if self.maxlen else {}
        self._pipe.xadd(self.keys.shard_stream(shard), fields, **kw)
        self.pending += 1

    def flush(self) -> int:
        n = self.pending
        if n:
            self._pipe.execute()
            self.pending = 0
        return n
