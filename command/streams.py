"""The wire format of the sharded input streams, shared by every feed and the engine.

One field per entry, named by its type, so an entry is cheap to write and to read:
- ``r``: a reading, JSON ``[station_id, kind, t_ms, value_si]``;
- ``i``: an incident, the Incident model as JSON;
- ``t``: a clock tick, ``t_ms`` (the engine evaluates silence on it);
- ``w``: an external warning (NWS, EA, CAP), the ExternalWarning model as JSON, written to every
  shard (each shard evaluates it against the zones it owns);
- ``f``: a forecast run for one station/point and kind, JSON ``[station_id, kind, issued_ms,
  [[t_ms, value_si], ...]]`` (kept apart from the observed readings ``r``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import redis

from command.keys import ENGINE_GROUP, Keys, shard_of
from command.models import ExternalWarning, Incident, Reading
from command.runtime.redis_client import on_cluster, transactional_pipeline

READING, INCIDENT, TICK = b"r", b"i", b"t"
WARNING, FORECAST = b"w", b"f"


def reading_entry(station_id: str, kind: str, t: int, value: float) -> dict[str, bytes]:
    return {"r": orjson.dumps((station_id, kind, t, value))}


def incident_entry(inc: Incident) -> dict[str, bytes]:
    return {"i": inc.model_dump_json().encode()}


def tick_entry(t: int) -> dict[str, bytes]:
    return {"t": str(t).encode()}


def warning_entry(w: ExternalWarning) -> dict[str, bytes]:
    return {"w": w.model_dump_json().encode()}


def forecast_entry(station_id: str, kind: str, issued: int, series: list[tuple[int, float]]) -> dict[str, bytes]:
    return {"f": orjson.dumps((station_id, kind, issued, series))}


def decode(fields: dict[bytes, bytes]) -> Reading | Incident | ExternalWarning | tuple | int | None:
    """An input entry as a Reading, an Incident, an ExternalWarning, a forecast tuple
    (station_id, kind, issued, series) or a tick time; None for an unknown entry type."""
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
    raw = fields.get(WARNING)
    if raw is not None:
        return ExternalWarning.model_validate_json(raw)
    raw = fields.get(FORECAST)
    if raw is not None:
        sid, kind, issued, series = orjson.loads(raw)
        return sid, kind, issued, [tuple(x) for x in series]
    return None


def field_map(fields: Sequence[bytes]) -> dict[bytes, bytes]:
    """An entry's fields as the server sends them, ``[name, value, ...]``, by name (a name given twice:
    the last value, as redis-py's own parsing does)."""
    return dict(zip(fields[::2], fields[1::2], strict=True))


def shard_count(r: redis.Redis, keys: Keys, default: int = 1) -> int:
    """The namespace's shard count: fixed when the namespace is first used, so feeds and engines agree."""
    r.hsetnx(keys.meta, "shards", default)
    return int(r.hget(keys.meta, "shards"))


def ensure_group(r: redis.Redis, stream: str, group: str = ENGINE_GROUP) -> None:
    """A consumer group (the engine's by default), reading from the stream's very start (idempotent)."""
    try:
        r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


SERIES_MAXLEN = 400  # a station's recent readings kept for its trend plot (4 days at 15 min)

# XADD of many entries to one stream in one command: ARGV = [maxlen or "", n1, field, value, ..., n2, ...]
# (n: how many field and value arguments the entry has). The same XADDs, run by the server in order:
# a replay adds one entry per reading, and queueing, packing and parsing one pipelined command each
# cost the writer about a third of a replay (bench/engine.py, docs/performance.md).
XADD_MANY = """
local maxlen, i, n = ARGV[1], 2, 0
while i <= #ARGV do
  local k = tonumber(ARGV[i])
  if maxlen ~= '' then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, i + 1, i + k))
  else
    redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 1, i + k))
  end
  i, n = i + k + 1, n + 1
end
return n
"""
XADD_MANY_CHUNK = 5000  # entries per script call: a long call holds the server up for everyone


class StreamWriter:
    """Buffers input entries per shard and writes them with one pipelined round trip per flush.

    With `record=True` (a namespace the dashboard shows) it also keeps what the map needs: each
    station's newest values (`latest`, with a change sequence so the map receives only deltas), its
    recent series for the trend plot, and the current version of each incident.
    """

    def __init__(self, r: redis.Redis, keys: Keys, shards: int, maxlen: int | None = None,
                 record: bool = False, transaction: bool = False) -> None:
        self.r, self.keys, self.shards, self.maxlen, self.record = r, keys, shards, maxlen, record
        # transaction=True: a flush is one MULTI/EXEC, so what a caller adds to `pipe` (e.g. a
        # feed's high-water mark) lands together with the entries, or not at all
        # (on a Redis Cluster, one MULTI/EXEC per slot, shards first: command/runtime/redis_client.py)
        self._pipe = transactional_pipeline(r) if transaction else r.pipeline(transaction=False)
        self.pending = 0
        self._added: dict[int, int] = {}
        self._latest: dict[str, dict[str, tuple[int, float]]] = {}
        self._heads: dict[int, tuple] = {}  # shard -> the XADD arguments before the fields (`_xadd`)
        # one server: a shard's entries go as one script call per flush (XADD_MANY); on a cluster, one
        # XADD each (the per-slot transactions route each command by its key)
        self._many = not on_cluster(r)
        self._entries: dict[int, list[Any]] = {}  # shard -> XADD_MANY's entry arguments, in order

    def reading(self, station_id: str, kind: str, t: int, value: float) -> None:
        self._xadd(shard_of(station_id, self.shards), "r", orjson.dumps((station_id, kind, t, value)))  # reading_entry
        if self.record:
            self._pipe.xadd(self.keys.series(station_id), {"k": kind, "t": t, "v": repr(value)},
                            maxlen=SERIES_MAXLEN, approximate=True)
            self._latest.setdefault(station_id, {})[kind] = (t, value)

    def incident(self, inc: Incident) -> None:
        self._add(shard_of(inc.id, self.shards), incident_entry(inc))
        if self.record:
            self._pipe.hset(self.keys.incidents, inc.id, inc.model_dump_json())

    def tick(self, t: int) -> None:
        for s in range(self.shards):
            self._add(s, tick_entry(t))

    def warning(self, w: ExternalWarning) -> None:
        """An external warning goes to every shard: each evaluates it for the zones it owns."""
        entry = warning_entry(w)
        for s in range(self.shards):
            self._add(s, entry)

    def forecast(self, station_id: str, kind: str, issued: int, series: list[tuple[int, float]]) -> None:
        self._add(shard_of(station_id, self.shards), forecast_entry(station_id, kind, issued, series))

    @property
    def pipe(self) -> redis.client.Pipeline:
        """The pipeline the next flush executes (add your own commands to land with the entries)."""
        return self._pipe

    def _add(self, shard: int, fields: dict[str, Any]) -> None:
        self._xadd(shard, *(x for kv in fields.items() for x in kv))

    def _xadd(self, shard: int, *fields: Any) -> None:
        """Queue XADD of one entry (`fields`: name, value, ...) on shard `shard`'s stream: the command
        redis-py's `xadd` sends (MAXLEN ~ when `maxlen` is set, id `*`), its arguments worked out
        once per shard (a replay adds one entry per reading)."""
        if self._many:
            self._entries.setdefault(shard, []).extend((len(fields), *fields))
            self._added[shard] = self._added.get(shard, 0) + 1
            self.pending += 1
            return
        head = self._heads.get(shard)
        if head is None:
            stream = self.keys.shard_stream(shard)
            head = self._heads[shard] = ((stream, b"MAXLEN", b"~", str(self.maxlen), "*") if self.maxlen
                                         else (stream, "*"))
        self._pipe.execute_command("XADD", *head, *fields)
        self._added[shard] = self._added.get(shard, 0) + 1
        self.pending += 1

    def flush(self) -> int:
        n = self.pending
        if self._latest:
            self._flush_latest()
        if n:
            for shard, args in self._entries.items():
                self._queue_many(shard, args)
            self._entries = {}
            # the count of entries ever added, in the same round trip: the stream itself is trimmed
            for shard, added in self._added.items():
                self._pipe.incrby(self.keys.shard_added(shard), added)
            self._added = {}
            self._pipe.execute()
            self.pending = 0
        return n

    def _queue_many(self, shard: int, args: list[Any]) -> None:
        """Queue a shard's buffered entries as XADD_MANY calls of at most XADD_MANY_CHUNK entries each."""
        stream, maxlen = self.keys.shard_stream(shard), str(self.maxlen) if self.maxlen else ""
        start, i, count = 0, 0, 0
        while i < len(args):
            i += int(args[i]) + 1
            count += 1
            if count == XADD_MANY_CHUNK or i >= len(args):
                self._pipe.execute_command("EVAL", XADD_MANY, 1, stream, maxlen, *args[start:i])
                start, count = i, 0

    def _flush_latest(self) -> None:
        k = self.keys
        seq = self.r.incr(k.latest_seq)
        olds = self.r.hmget(k.latest, list(self._latest))
        mapping = {}
        for (sid, kinds), old in zip(self._latest.items(), olds, strict=True):
            cur = orjson.loads(old) if old else {}
            for kind, (t, v) in kinds.items():
                if kind not in cur or cur[kind][0] <= t:  # a late reading never replaces a newer one
                    cur[kind] = [t, v]
            mapping[sid] = orjson.dumps(cur)
        self._pipe.hset(k.latest, mapping=mapping)
        self._pipe.zadd(k.latest_changed, dict.fromkeys(self._latest, seq))
        self._latest = {}


def read_stream(r: redis.Redis, stream: str) -> list[tuple[str, dict[bytes, bytes]]]:
    """Every entry of a stream, oldest first, read in pages (the stream may be long)."""
    out: list[tuple[str, dict[bytes, bytes]]] = []
    start = "-"
    while True:
        chunk = r.xrange(stream, min=start, count=5000)
        if not chunk:
            return out
        out.extend((eid.decode(), fields) for eid, fields in chunk)
        last = chunk[-1][0].decode()
        ms, seq = last.split("-")
        start = f"{ms}-{int(seq) + 1}"


# ---- input counts and trimming ----------------------------------------------------------------------
# An input stream is trimmed below what every consumer group has acknowledged, so its length stays
# bounded while nothing unread or unacknowledged is dropped. Readers that need the history keep it
# elsewhere: `input_count` (how many entries were ever added, for "lost or doubled" checks), and a
# reader that wants the entries themselves (`record`) holds a consumer group of its own on the stream,
# which keeps everything it has not acknowledged.

def input_count(r: redis.Redis, keys: Keys, shards: int | None = None) -> int:
    """Input entries ever added to the namespace's shard streams (the streams themselves are trimmed)."""
    n = shards if shards is not None else int(r.hget(keys.meta, "shards") or 1)
    vals = r.mget([keys.shard_added(s) for s in range(n)])
    return sum(int(v) for v in vals if v is not None)


# KEYS[1]: a stream. Trims (exactly) every entry below the smallest id some consumer group still needs:
# for each group its oldest pending entry (delivered, not acknowledged), or else the id just above its
# last-delivered id. A stream with no group is left alone (nobody said what was read). Atomic, so a
# group created or a delivery made meanwhile cannot slip under the floor. Returns entries removed.
_TRIM_ACKED = """
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end
local best_ms, best_seq = nil, nil
for _, g in ipairs(groups) do
  local name, last, pending
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1]
    elseif g[i] == 'last-delivered-id' then last = g[i + 1]
    elseif g[i] == 'pending' then pending = tonumber(g[i + 1]) end
  end
  local ms, seq
  if pending > 0 then
    local first = redis.call('XPENDING', KEYS[1], name)[2]
    local d = string.find(first, '-', 1, true)
    ms, seq = tonumber(string.sub(first, 1, d - 1)), tonumber(string.sub(first, d + 1))
  else
    local d = string.find(last, '-', 1, true)
    ms, seq = tonumber(string.sub(last, 1, d - 1)), tonumber(string.sub(last, d + 1)) + 1
  end
  if best_ms == nil or ms < best_ms or (ms == best_ms and seq < best_seq) then
    best_ms, best_seq = ms, seq
  end
end
if best_ms == 0 and best_seq <= 1 then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', best_ms, best_seq))
"""


def trim_acknowledged(r: redis.Redis, stream: str) -> int:
    """Remove the stream's entries that every consumer group has read and acknowledged (XTRIM MINID
    at the oldest entry some group still needs). Returns how many were removed."""
    return int(r.register_script(_TRIM_ACKED)(keys=[stream]))
