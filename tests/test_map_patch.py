"""The map's small wire updates: an alert change sends only the stations and zone outlines it names,
and the patched figure equals the whole figure drawn afresh."""

from __future__ import annotations

import copy

import orjson
from dash import Patch

from command.config import Settings
from command.engine.consumer import Engine
from command.keys import Keys
from command.scenarios.replay import run_replay
from command.streams import StreamWriter
from layouts.operator import filters

from .conftest import SCENARIOS

MIN = 60_000


def apply(fig: dict, patch: Patch) -> dict:
    """The figure as the browser has it after Dash applies the patch (Assign operations only)."""
    out = copy.deepcopy(fig)
    for op in patch.to_plotly_json()["operations"]:
        assert op["operation"] == "Assign", op
        *path, last = op["location"]
        node = out
        for k in path:
            node = node[k]
        node[last] = op["params"]["value"]
    return orjson.loads(orjson.dumps(out))


def open_alert(r, keys: Keys, sid: str, yellow: float) -> None:
    """The station stays above yellow for the rule's 30 minutes after the clock: the engine opens an alert."""
    clock = int(r.get(keys.clock))
    w = StreamWriter(r, keys, 1, record=True)
    for dt in (15, 30, 45):
        w.reading(sid, "water_level", clock + dt * MIN, yellow + 0.2)
    w.flush()
    eng = Engine(r, keys, consumer=f"test-{keys.ns}")
    eng.start()
    eng.drain()
    eng.release()


def test_an_alert_change_patches_only_what_it_names_and_equals_the_whole_map(redis_url, tmp_path, r):
    from app import create_app
    from layouts.operator.figure import build_figure, map_update

    app = create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url)
    keys = Keys(run_replay(r, SCENARIOS / "jiangcheng_flood").namespace)
    from command.publish import views

    alerted = {a["subject"] for a in views.open_alerts(r, keys)}
    idx = views.station_index(r, keys)
    sid = next(s for s in idx.ids if s not in alerted and idx.stations[s].kind == "water_level"
               and "yellow" in idx.stations[s].thresholds)
    with app.server.test_request_context("/"):
        fig, ver = build_figure(r, keys, "en")
        ver["lang"] = "en"
        fig = orjson.loads(orjson.dumps(fig))
        open_alert(r, keys, sid, idx.stations[sid].thresholds["yellow"])
        assert sid in {a["subject"] for a in views.open_alerts(r, keys)}
        patch, new_ver = map_update(r, keys, "en", ver)
        whole, _ = build_figure(r, keys, "en")
    assert isinstance(patch, Patch)
    ops = patch.to_plotly_json()["operations"]
    locs = [op["location"] for op in ops]
    i = idx.pos[sid]
    # the station's colour, size and hover, one by one; never the whole marker set
    assert ["data", 0, "marker", "color", i] in locs and ["data", 0, "marker", "size", i] in locs
    assert ["data", 0, "marker", "color"] not in locs and ["data", 0, "customdata"] not in locs
    assert all(isinstance(loc[-1], int) for loc in locs if loc[:2] == ["data", 0])  # one point at a time
    # its zone's outline, in place (not the zone layers with their polygons)
    zone = idx.stations[sid].zone
    if zone:
        outline = ver["zl"] + sorted(views.zones(r, keys)).index(zone)
        assert ["layout", "map", "layers", outline, "color"] in locs
    assert not any(loc[:3] == ["layout", "map", "layers"] and len(loc) == 3 for loc in locs)
    assert len(orjson.dumps(patch.to_plotly_json())) < 50_000
    # what the browser then holds is what a whole new map would show
    got = apply(fig, patch)
    whole = orjson.loads(orjson.dumps(whole))
    assert got["data"][0] == whole["data"][0]
    assert got["data"][1] == whole["data"][1]
    assert got["layout"]["map"]["layers"] == whole["layout"]["map"]["layers"]
    # and nothing more to send
    with app.server.test_request_context("/"):
        new_ver["lang"] = "en"
        assert map_update(r, keys, "en", new_ver)[0] == map_update(r, keys, "en", new_ver)[1]


def test_a_page_ahead_of_a_restarted_redis_gets_the_whole_map(redis_url, tmp_path, r):
    """Redis restarted from an AOF that lost its last writes: the page saw station changes up to a
    number Redis counts from again. A patch since that number would skip the changes made after the
    restart; the page must get the whole map, with them."""
    from app import create_app
    from command.publish import views
    from layouts.operator.figure import build_figure, map_update

    app = create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url)
    keys = Keys(run_replay(r, SCENARIOS / "jiangcheng_flood").namespace)
    idx = views.station_index(r, keys)
    sid = next(s for s in idx.ids if idx.stations[s].kind == "water_level")
    with app.server.test_request_context("/"):
        _, ver = build_figure(r, keys, "en")
        ver["lang"] = "en"
        page = {**ver, "seq": ver["seq"] + 3}  # what the page saw before Redis lost its last 3 changes
        w = StreamWriter(r, keys, 1, record=True)
        w.reading(sid, "water_level", int(r.get(keys.clock)) + MIN, 12.5)
        w.flush()  # after the restart: change number ver["seq"] + 1, below what the page saw
        assert int(r.get(keys.latest_seq)) <= page["seq"]
        fig, new_ver = map_update(r, keys, "en", page)
        assert not isinstance(fig, Patch)
        assert "12.50" in fig["data"][0]["customdata"][idx.pos[sid]][3]
        assert new_ver["seq"] == int(r.get(keys.latest_seq))
        # a page behind by an alert event (a stream id above Redis's last), or with a version that is not
        # one of ours, is drawn whole too
        for odd in ({**ver, "alerts": "99999999999999-0"}, {**ver, "seq": "x"}, {**ver, "alerts": "a-b"}):
            assert not isinstance(map_update(r, keys, "en", odd)[0], Patch)
        assert isinstance(map_update(r, keys, "en", ver)[0], Patch)  # a page behind Redis: a patch, as before


def test_a_client_version_from_before_the_stream_was_trimmed_gets_the_whole_layer(redis_url, tmp_path, r):
    from app import create_app
    from layouts.operator.figure import alert_subjects

    create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url)
    keys = Keys(run_replay(r, SCENARIOS / "rule_threshold").namespace)
    first = r.xrange(keys.alerts_stream, count=1)[0][0].decode()
    named = alert_subjects(r, keys, "0-0")
    assert named is not None and "WL-A" in named[0]
    assert alert_subjects(r, keys, first) is not None
    r.xtrim(keys.alerts_stream, minid="9999999999999-0")  # every event gone: what changed cannot be told
    r.xadd(keys.alerts_stream, {"event": "open", "fingerprint": "x", "alert": orjson.dumps({"subject": "WL-A"})},
           id="9999999999999-1")
    assert alert_subjects(r, keys, first) is None


def test_the_list_filters():
    red_z1 = {"level": "red", "zone": "Z1", "subject": "WL-1", "subject_type": "station",
              "recommendation": {"items": [{"department": "fire_rescue"}]}}
    yellow_z2 = {"level": "yellow", "subject": "Z2", "subject_type": "zone", "recommendation": None}
    f = filters.parse(["red"], None, None)
    assert [filters.keep(a, f) for a in (red_z1, yellow_z2)] == [True, False]
    f = filters.parse(["red", "orange", "yellow"], ["Z2"], [])
    assert [filters.keep(a, f) for a in (red_z1, yellow_z2)] == [False, True]  # a zone's own alert is in it
    f = filters.parse(None, None, ["fire_rescue"])
    assert [filters.keep(a, f) for a in (red_z1, yellow_z2)] == [True, False]
    assert not filters.parse(list(filters.LEVELS), [], []).active
    # what the controls never send counts as no filter, never an error
    for bad in ({"x": 1}, "red", [1, 2], ["x" * 500], ["purple"]):
        assert filters.parse(bad, bad, bad).levels is None
