"""Forecasts and external warnings, fetched over HTTP, through the real engine: rule kinds
`forecast_accumulation` and `zone_warning`."""

from __future__ import annotations

import json

import orjson
import pytest
import yaml

from command.engine.consumer import Engine
from command.keys import Keys
from command.models import ExternalWarning, Reading, Station, Zone
from command.publish.report import collect_alerts
from command.rules import RuleError, ShardEvaluator, parse_rules
from command.streams import StreamWriter, shard_count
from command.timeutil import parse_time
from feeds.cap_feed import CAPSource
from feeds.ea import EASource
from feeds.health import read_health
from feeds.nws import NWSSource
from feeds.open_meteo import OpenMeteoSource
from feeds.runner import prepare_namespace

from .conftest import FakeClock, coordinator, fixture_bytes, fixture_json, stream_entries

SQUARE = lambda lon, lat, d=0.2: {"type": "Polygon", "coordinates": [[[lon - d, lat - d], [lon + d, lat - d],  # noqa: E731
                                                                    [lon + d, lat + d], [lon - d, lat + d],
                                                                    [lon - d, lat - d]]]}


def setup_ns(r, keys: Keys, tmp_path, rules: list[dict], zones: list[dict] | None = None) -> None:
    rp = tmp_path / "rules.yaml"
    rp.write_text(yaml.safe_dump({"levels": ["yellow", "orange", "red"], "rules": rules}))
    zp = None
    if zones is not None:
        zp = tmp_path / "zones.geojson"
        zp.write_text(json.dumps({"type": "FeatureCollection", "features": zones}))
    prepare_namespace(r, keys, rules=rp, zones=zp)


def run_engine(r, keys: Keys) -> list[dict]:
    eng = Engine(r, keys, consumer="test-engine")
    eng.start()
    eng.drain()
    eng.release()
    return collect_alerts(r, keys)


def tick(r, keys: Keys, iso: str) -> None:
    w = StreamWriter(r, keys, shard_count(r, keys))
    w.tick(parse_time(iso))
    w.flush()


# ---- forecasts ---------------------------------------------------------------------------------------
FORECAST_RULE = {"id": "rain-forecast", "kind": "forecast_accumulation", "window": "6h",
                 "above": {"yellow": 20, "red": 25}}


def test_open_meteo_forecast_kept_apart_and_raises_a_forecast_rule(server, r, keys, tmp_path, sleeps):
    setup_ns(r, keys, tmp_path, [FORECAST_RULE, {"id": "heavy-rain", "kind": "accumulation",
                                                 "match": {"kind": "rainfall"}, "window": "1h",
                                                 "above": {"yellow": 1}}])
    server.expect_request("/v1/forecast").respond_with_data(fixture_bytes("open_meteo.json"),
                                                            content_type="application/json")
    src = OpenMeteoSource({"url": server.url_for("/v1/forecast"),
                           "points": [{"id": "paris", "name": "Paris", "lat": 48.8534, "lon": 2.3488}]})
    clock = FakeClock(parse_time("2024-08-17T08:20:00+02:00"))
    rep = coordinator(src, r, keys, clock, sleeps).poll()
    assert rep.ok and rep.forecasts == 2 and rep.readings == 0  # two runs: rainfall and wind
    req = server.log[0][0]
    assert req.args["hourly"] == "precipitation,wind_speed_10m" and req.args["latitude"] == "48.8534"
    entries = stream_entries(r, keys)
    assert not [e for e in entries if isinstance(e, Reading)]  # nothing observed
    fc = [e for e in entries if isinstance(e, tuple)]
    assert {(sid, kind) for sid, kind, _i, _s in fc} == {("om:paris", "rainfall"), ("om:paris", "wind_speed")}
    issued = parse_time("2024-08-17T08:00:00+02:00")  # the run we saw: this hour's
    assert {i for _s, _k, i, _series in fc} == {issued}
    stored = orjson.loads(r.hget(keys.forecasts, "om:paris"))
    assert stored["rainfall"]["issued"] == issued and len(stored["rainfall"]["series"]) == 24
    assert read_health(r, keys, "open-meteo")["forecasts"] == 2
    # (08:00, 14:00]: 0.1 + 0.8 + 5.4 + 4.9 + 5.6 + 7.3 = 24.1 mm forecast: yellow
    alerts = run_engine(r, keys)
    assert [(a["rule"], a["subject"], a["level"], a["value"]) for a in alerts] == [
        ("rain-forecast", "om:paris", "yellow", pytest.approx(24.1))]
    assert alerts[0]["unit"] == "mm"
    # the window slides with the clock: at 10:00 the next 6 h hold 29.4 mm (red); at 14:00, 7.4 mm
    tick(r, keys, "2024-08-17T10:00:00+02:00")
    a = run_engine(r, keys)[0]
    assert a["level"] == "red" and a["peak_level"] == "red" and a["value"] == pytest.approx(29.4)
    tick(r, keys, "2024-08-17T14:00:00+02:00")
    a = run_engine(r, keys)[0]
    assert a["status"] == "resolved" and a["resolved_at"] == parse_time("2024-08-17T14:00:00+02:00")
    # the same run fetched again is not a new forecast
    clock.advance(600)
    assert coordinator(src, r, keys, clock, sleeps).poll().forecasts == 0


# ---- external warnings -----------------------------------------------------------------------------------
def zone(zid: str, geometry: dict, **props) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": {"id": zid, "name": zid, **props}}


def test_nws_zone_alert_matches_a_zone_by_ugc_geocode_and_ends_when_no_longer_listed(server, r, keys, tmp_path,
                                                                                     clock, sleeps):
    setup_ns(r, keys, tmp_path, [{"id": "nws-flood", "kind": "zone_warning", "events": ["Flood Watch", "Flood Warning"]}],
             [zone("Z-COAST", SQUARE(-123.5, 45.0), geocodes={"UGC": ["ORZ004"]}),
              zone("Z-ELSEWHERE", SQUARE(-100.0, 40.0), geocodes={"UGC": ["KSZ001"]})])
    server.expect_oneshot_request("/alerts/active").respond_with_data(fixture_bytes("nws_alerts.geojson"),
                                                                     content_type="application/geo+json")
    src = NWSSource({"url": server.url_for("/alerts/active"), "params": {"zone": "ORZ004"}})
    c = coordinator(src, r, keys, clock, sleeps)
    rep = c.poll()
    assert rep.ok and rep.warnings == 1
    assert server.log[0][0].headers["Accept"] == "application/geo+json"
    assert "flood-command" in server.log[0][0].headers["User-Agent"]
    stored = ExternalWarning.model_validate_json(r.hget(keys.warnings, "nws:NWS-IDP-PROD-3965873-3369046"))
    assert stored.event == "Flood Watch"
    alerts = run_engine(r, keys)
    assert [(a["rule"], a["subject"], a["subject_type"], a["level"]) for a in alerts] == [
        ("nws-flood", "Z-COAST", "zone", "orange")]  # Severe -> orange
    assert alerts[0]["opened_at"] == parse_time("2019-12-20T13:34:00-08:00")
    assert alerts[0]["message"].startswith("Flood Watch issued December 20")
    # the watch is no longer listed: it has ended, and the zone's alert resolves
    empty = fixture_json("nws_alerts.geojson")
    empty["features"] = []
    server.expect_oneshot_request("/alerts/active").respond_with_json(empty)
    clock.advance(120)
    rep = c.poll()
    assert rep.ok and rep.warnings == 0 and r.hlen(keys.warnings) == 0
    events = [f[b"event"] for _e, f in r.xrange(keys.warnings_stream)]
    assert events == [b"update", b"ended"]
    a = run_engine(r, keys)[0]
    assert a["status"] == "resolved"
    assert read_health(r, keys, "nws")["warnings"] == 0


def test_ea_flood_list_updates_in_place_and_a_withdrawn_area_ends(server, r, keys, tmp_path, clock, sleeps):
    setup_ns(r, keys, tmp_path, [{"id": "ea-flood", "kind": "zone_warning", "min_severity": "Severe"}],
             [zone("Z-NABURN", SQUARE(-1.1, 53.9), geocodes={"EA_FWD": ["122FWF723"]}),
              zone("Z-OUSE", SQUARE(-1.1, 54.0), geocodes={"EA_FWD": ["122WAF946"]})])
    server.expect_oneshot_request("/fm/id/floods").respond_with_data(fixture_bytes("ea_floods.json"),
                                                                    content_type="application/json")
    src = EASource({"base_url": server.url_for("/fm"), "stations": [], "floods": True})
    c = coordinator(src, r, keys, clock, sleeps)
    assert c.poll().warnings == 5
    alerts = run_engine(r, keys)
    # only the Flood Warning (Severe) counts under min_severity Severe; the Flood Alert area does not
    assert [(a["subject"], a["level"]) for a in alerts] == [("Z-NABURN", "orange")]
    doc = fixture_json("ea_floods.json")
    doc["items"] = [i for i in doc["items"] if i["floodAreaID"] != "122FWF723"]
    server.expect_oneshot_request("/fm/id/floods").respond_with_json(doc)
    clock.advance(900)
    assert c.poll().warnings == 4
    assert run_engine(r, keys)[0]["status"] == "resolved"


def test_cap_atom_feed_with_embedded_and_linked_alerts_opens_a_polygon_zone_alert(server, r, keys, tmp_path,
                                                                                   clock, sleeps):
    setup_ns(r, keys, tmp_path, [{"id": "cap-any", "kind": "zone_warning"}],
             [zone("Z-ACADIA", SQUARE(-92.4, 30.3, 0.1)), zone("Z-TOUWU", SQUARE(120.9, 24.6, 0.1),
                                                             geocodes={"Taiwan_Geocode_100": ["1000512"]}),
              zone("Z-FAR", SQUARE(0, 0))])
    taiwan = fixture_bytes("cap_taiwan_wra_reservoir_2014.xml")[3:].split(b"?>", 1)[1]
    feed = (b'<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            b"<id>urn:test:feed</id><title>t</title><updated>2020-08-26T09:14:00Z</updated>"
            b"<entry><id>urn:test:1</id><title>linked</title><updated>2020-08-26T09:14:00Z</updated>"
            b'<link rel="alternate" type="application/cap+xml" href="' + server.url_for("/cap/laura.xml").encode()
            + b'"/></entry><entry><id>urn:test:2</id><title>embedded</title><updated>2014-05-14T12:10:00Z</updated>'
            b'<content type="application/cap+xml">' + taiwan + b"</content></entry></feed>")
    server.expect_request("/feed.atom").respond_with_data(feed, content_type="application/atom+xml")
    server.expect_request("/cap/laura.xml").respond_with_data(fixture_bytes("cap_nws_hurricane_warning_2020.xml"),
                                                              content_type="application/cap+xml")
    src = CAPSource({"urls": [server.url_for("/feed.atom")]})
    rep = coordinator(src, r, keys, clock, sleeps).poll()
    assert rep.ok and rep.warnings == 2
    alerts = run_engine(r, keys)
    got = {(a["subject"], a["level"], a["status"]) for a in alerts}
    # the hurricane's two polygons cover Acadia (Extreme -> red); the reservoir release has only a
    # geocode, which Z-TOUWU names (Moderate -> yellow); nothing covers Z-FAR
    assert got == {("Z-ACADIA", "red", "open"), ("Z-TOUWU", "yellow", "open")}
    # the next clock tick is past the reservoir warning's expiry (21:10 +08:00): that alert resolves
    tick(r, keys, "2020-08-26T10:00:00+00:00")
    got = {(a["subject"], a["status"]) for a in run_engine(r, keys)}
    assert got == {("Z-ACADIA", "open"), ("Z-TOUWU", "resolved")}


# ---- the rule kinds, pure ----------------------------------------------------------------------------------
def test_zone_warning_update_replaces_and_cancel_removes():
    rs = parse_rules({"rules": [{"id": "w", "kind": "zone_warning"}]})
    z = Zone(id="Z", geometry=SQUARE(0, 0))
    ev = ShardEvaluator(rs, {}, {"Z": z})
    t0 = 1_000_000
    base = {"source": "cap", "geometry": SQUARE(0.1, 0.1, 0.05), "event": "Flood Warning"}
    ch = ev.on_warning(ExternalWarning(id="cap:1", sent=t0, severity="Moderate", **base))
    assert [(c.event, c.alert["level"]) for c in ch] == [("open", "yellow")]
    ch = ev.on_warning(ExternalWarning(id="cap:2", sent=t0 + 60_000, severity="Extreme", msg_type="Update",
                                       references=["cap:1"], **base))
    assert [(c.event, c.alert["level"]) for c in ch] == [("raise", "red")]
    ch = ev.on_warning(ExternalWarning(id="cap:3", sent=t0 + 120_000, msg_type="Cancel", references=["cap:2"], **base))
    assert [c.event for c in ch] == ["resolve"]


def test_zone_warning_expires_on_the_clock_and_ignores_test_messages():
    rs = parse_rules({"rules": [{"id": "w", "kind": "zone_warning", "level": "orange"}]})
    ev = ShardEvaluator(rs, {}, {"Z": Zone(id="Z", geometry=SQUARE(0, 0))})
    w = ExternalWarning(id="x:1", source="x", sent=0, expires=3_600_000, severity="Minor", geometry=SQUARE(0, 0))
    assert [c.alert["level"] for c in ev.on_warning(w)] == ["orange"]  # a fixed level ignores severity
    assert ev.on_tick(1_800_000) == []
    assert [c.event for c in ev.on_tick(3_600_000)] == ["resolve"]
    test_msg = w.model_copy(update={"id": "x:2", "status": "Test", "expires": None})
    assert ev.on_warning(test_msg) == []


def test_forecast_rule_only_counts_the_newest_run_and_never_observations():
    rs = parse_rules({"rules": [FORECAST_RULE]})
    st = Station(id="P", kind="rainfall", lon=0, lat=0, unit="mm")
    ev = ShardEvaluator(rs, {"P": st}, {})
    assert ev.on_reading(Reading("P", "rainfall", 0, 500.0)) == []  # measured rain is not a forecast
    h = 3_600_000
    run = [(h * i, 10.0) for i in range(1, 7)]
    assert [c.alert["level"] for c in ev.on_forecast("P", "rainfall", 0, run)] == ["red"]
    assert ev.on_forecast("P", "rainfall", 0, [(h, 0.0)]) == []  # the same run again: ignored
    ch = ev.on_forecast("P", "rainfall", h, [(h * 2, 1.0)])
    assert [c.event for c in ch] == ["resolve"]


@pytest.mark.parametrize("rule,message", [
    ({"id": "f", "kind": "forecast_accumulation", "above": {"red": 50}}, "missing `window`"),
    ({"id": "f", "kind": "forecast_accumulation", "window": "6h", "above": "thresholds"}, "only for threshold rules"),
    ({"id": "w", "kind": "zone_warning", "min_severity": "Huge"}, "`min_severity` must be one of"),
    ({"id": "w", "kind": "zone_warning", "level": "purple"}, "`level` must be one of"),
    ({"id": "w", "kind": "zone_warning", "zones": {"colour": "red"}}, "`zones` takes `risk` and/or `ids`"),
    ({"id": "w", "kind": "zone_warning", "above": {"red": 1}}, "unknown key(s) above"),
])
def test_new_rule_kinds_refuse_bad_rules(rule, message):
    with pytest.raises(RuleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_rules({"rules": [rule]})


def test_forecast_rule_defaults_to_rainfall():
    rule = parse_rules({"rules": [FORECAST_RULE]}).rules[0]
    assert rule.match_kind == "rainfall" and rule.window_ms == 6 * 3_600_000


def test_warnings_reach_every_shard_and_each_takes_its_own_zones(r, tmp_path):
    keys = Keys("test-shards-w")
    r.hset(keys.meta, "shards", 4)
    zones = [zone(f"Z{i}", SQUARE(i * 0.01, 0, 0.004)) for i in range(8)]
    setup_ns(r, keys, tmp_path, [{"id": "w", "kind": "zone_warning"}], zones)
    w = StreamWriter(r, keys, shard_count(r, keys))
    w.warning(ExternalWarning(id="x:1", source="x", sent=0, severity="Severe", geometry=SQUARE(0.035, 0, 0.05)))
    w.flush()
    alerts = run_engine(r, keys)
    assert sorted(a["subject"] for a in alerts) == [f"Z{i}" for i in range(8)]  # each zone exactly once
