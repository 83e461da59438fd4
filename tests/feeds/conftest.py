"""Feed tests: recorded payloads served over real HTTP from a local server on 127.0.0.1, into a real Redis."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import orjson
import pytest
from pytest_httpserver import HTTPServer

from command.keys import Keys
from command.streams import decode
from feeds.coordinator import FeedCoordinator
from feeds.source import Source

FIX = Path(__file__).resolve().parent.parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIX / name).read_bytes()


def fixture_json(name: str):
    return json.loads(fixture_bytes(name))


@pytest.fixture
def server():
    """A threaded HTTP server on loopback (a slow answer does not hold up the next request)."""
    srv = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    srv.start()
    yield srv
    srv.clear()
    if srv.is_running():
        srv.stop()


class FakeClock:
    def __init__(self, t: int = 1_700_000_000_000) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += int(seconds * 1000)


class Sleeps(list):
    """Records the waits between retries instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def coordinator(source: Source, r, keys: Keys, clock, sleeps, **kw) -> FeedCoordinator:
    return FeedCoordinator(source, r, keys, clock=clock, sleep=sleeps, **kw)


def stream_entries(r, keys: Keys) -> list:
    """Every decoded input entry of the namespace (all shards), in stream order per shard."""
    n = int(r.hget(keys.meta, "shards") or 1)
    out = []
    for s in range(n):
        for _eid, fields in r.xrange(keys.shard_stream(s)):
            out.append(decode(fields))
    return out


def readings_in_stream(r, keys: Keys) -> list[tuple[str, str, int, float]]:
    from command.models import Reading

    return [(x.station_id, x.kind, x.t, x.value) for x in stream_entries(r, keys) if isinstance(x, Reading)]


def deadletters(r, keys: Keys) -> list[dict]:
    return [{"source": f[b"source"].decode(), "reason": f[b"reason"].decode(), "record": orjson.loads(f[b"record"])}
            for _eid, f in r.xrange(keys.deadletter)]


def usgs_variant(values: dict[str, list[tuple[str, str]]], drop_sites: tuple[str, ...] = ()) -> bytes:
    """The recorded USGS payload with other values: {'01491000:00065': [(dateTime, value), ...]}."""
    doc = copy.deepcopy(fixture_json("usgs_iv.json"))
    series = []
    for ts in doc["value"]["timeSeries"]:
        _, site, param, _stat = ts["name"].split(":")
        if site in drop_sites:
            continue
        key = f"{site}:{param}"
        if key in values:
            ts["values"][0]["value"] = [{"value": v, "qualifiers": ["P"], "dateTime": t} for t, v in values[key]]
        series.append(ts)
    doc["value"]["timeSeries"] = series
    return json.dumps(doc).encode()
