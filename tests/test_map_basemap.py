"""The operator map's base: offline vector layers of the sample city, labels in the page's language,
closed roads, a dispatched unit's route by road, the base-map setting and the MBTiles tile route."""

from __future__ import annotations

import sqlite3

import orjson
import pytest

from command.config import SAMPLE_DATA, Settings
from command.keys import Keys
from command.ops.dispatch import dispatch
from command.planning.roads import RoadNetwork
from command.scenarios.replay import run_replay
from layouts.operator.basemap import VECTOR, MapBase, MapBaseError, resolve_base

from .conftest import SCENARIOS

SAMPLE = MapBase(landmarks=SAMPLE_DATA / "landmarks.geojson")
PNG = b"\x89PNG\r\n\x1a\n" + b"tile-0-0-1"


@pytest.fixture
def app(redis_url, tmp_path, r):
    from app import create_app

    return create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url)


@pytest.fixture
def sample(r):
    return Keys(run_replay(r, SCENARIOS / "jiangcheng_flood").namespace)


def _layers(fig):
    return {x.get("name"): x for x in fig["layout"]["map"]["layers"] if x.get("name")}


def test_the_vector_base_draws_streets_by_speed_waterways_districts_and_landmarks(app, r, sample):
    from layouts.operator.figure import build_figure

    roads = orjson.loads(r.get(sample.roads))
    with app.server.test_request_context("/"):
        fig, ver = build_figure(r, sample, "en", SAMPLE)
        zh, _ = build_figure(r, sample, "zh", SAMPLE)
    layers = _layers(fig)
    assert fig["layout"]["map"]["style"] == "white-bg"  # no tile server, no glyph server
    assert not any(x.get("sourcetype") == "raster" for x in fig["layout"]["map"]["layers"])
    # every road of the network is drawn once, in the layer of its speed class (bridges on their own)
    drawn = {name: len(x["source"]["features"]) for name, x in layers.items() if name.startswith("streets-")}
    assert sum(drawn.values()) == len(roads["features"])
    assert drawn["streets-bridge"] == sum(1 for f in roads["features"] if f["properties"].get("kind") == "bridge")
    assert drawn["streets-arterial"] == sum(1 for f in roads["features"] if f["properties"].get("speed_kmh", 0) >= 50
                                            and f["properties"].get("kind") != "bridge")
    assert layers["streets-arterial"]["line"]["width"] > layers["streets-street"]["line"]["width"]
    assert [f["properties"]["name"] for f in layers["waterways"]["source"]["features"]] == ["Qingjiang River",
                                                                                             "Shahe River"]
    # district names follow the page's language; landmarks are a trace of their own, named per language
    zones = {z["properties"]["id"]: z["properties"] for z in orjson.loads((SAMPLE_DATA / "zones.geojson")
                                                                          .read_bytes())["features"]}
    en = {x["id"]: x["text"] for x in fig["layout"]["meta"]["labels"] if x["kind"] == "district"}
    cn = {x["id"]: x["text"] for x in zh["layout"]["meta"]["labels"] if x["kind"] == "district"}
    assert en == {k: p["name"] for k, p in zones.items()} and cn == {k: p["name_zh"] for k, p in zones.items()}
    marks = fig["data"][4]
    assert len(marks["lon"]) >= 15 and {c[2] for c in marks["customdata"]} >= {"hospital or clinic", "depot",
                                                                                 "fire station", "shelter"}
    assert "City Central Hospital" in [c[1] for c in marks["customdata"]]
    assert "市中心医院" in [c[1] for c in zh["data"][4]["customdata"]]
    # the zone outlines and the closures are where the version says (what a Patch addresses)
    outlines = fig["layout"]["map"]["layers"][ver["zl"]:ver["zl"] + len(zones)]
    assert all(x["type"] == "line" and x["source"]["properties"]["id"] == zid
               for x, zid in zip(outlines, sorted(zones), strict=True))
    assert fig["layout"]["map"]["layers"][ver["cl"]]["name"] == "closed-roads"


def test_closed_roads_are_the_segments_near_a_closing_incident(app, r, sample):
    from layouts.operator.figure import build_figure

    with app.server.test_request_context("/"):
        fig, _ = build_figure(r, sample, "en", SAMPLE)
    closed = _layers(fig)["closed-roads"]
    records = {c["id"]: c for c in map(orjson.loads, r.hvals(sample.road_closures))}
    by = {f["properties"]["incident"]: f["geometry"]["coordinates"] for f in closed["source"]["features"]}
    assert by and set(by) <= set(records)
    assert closed["line"]["dash"] and closed["color"] != _layers(fig)["streets-street"]["color"]
    net = RoadNetwork.from_geojson(orjson.loads(r.get(sample.roads)))
    for iid, lines in by.items():
        c = records[iid]
        for seg in lines:  # each drawn segment passes within the closure's radius of the incident
            mid = net.project([(seg[0][0] + seg[1][0]) / 2], [(seg[0][1] + seg[1][1]) / 2])[0]
            half = abs(net.project([seg[0][0]], [seg[0][1]])[0] - mid).max()
            assert ((mid - net.project([c["lon"]], [c["lat"]])[0]) ** 2).sum() ** 0.5 <= c["radius_m"] + half + 1
    # a levee breach closes more road than a road closure
    if "INC-010" in by and "INC-007" in by:
        assert len(by["INC-010"]) > len(by["INC-007"])


def test_a_dispatched_unit_is_drawn_on_its_road_route_and_the_map_patches_it_in(app, r, sample):
    from dash import Patch

    from command.models import Resource
    from layouts.operator.figure import build_figure, map_update

    net = RoadNetwork.from_geojson(orjson.loads(r.get(sample.roads)))
    vertices = {tuple(p) for p in net.node_lonlat.tolist()}
    fp = r.zrange(sample.alerts_open, 0, -1)[-1].decode()
    alert = orjson.loads(r.get(sample.alert(fp)))
    unit = next(Resource.model_validate_json(v) for v in r.hvals(sample.resources)
                if Resource.model_validate_json(v).status.value == "available"
                and Resource.model_validate_json(v).type == "pump")
    with app.server.test_request_context("/"):
        fig, ver = build_figure(r, sample, "en", SAMPLE)
        ver["lang"] = "en"
        before = segments(fig["data"][3])
        dispatch(r, sample, fingerprint=fp, level=alert["level"], resource_ids=[unit.id], operator="op",
                 now=int(r.get(sample.clock)))
        patch, _ = map_update(r, sample, "en", ver, SAMPLE)
    assert isinstance(patch, Patch)
    ops = {tuple(op["location"]): op for op in patch.to_plotly_json()["operations"]}
    assert ("data", 3) in ops and ("data", 0) not in ops  # the route is sent, not the stations
    after = segments(ops[("data", 3)]["params"]["value"])
    new = [x for x in after if x not in before]
    assert len(new) == 1 and len(after) == len(before) + 1  # one unit more on its way
    pts = new[0]
    assert pts[0] == (unit.lon, unit.lat) and pts[-1] == (alert["lon"], alert["lat"])
    road = pts[1:-1]
    assert len(road) >= 3 and all(p in vertices for p in road)  # along the road network
    # each step is a road segment of the network (not a straight line across the river)
    for a, b in zip(road, road[1:], strict=False):
        assert net.edge_of.get((vertices_index(net)[a], vertices_index(net)[b])) is not None


def segments(trace: dict) -> list[list[tuple[float, float]]]:
    """The routes of a route trace (None between two routes)."""
    out: list[list[tuple[float, float]]] = [[]]
    for x, y in zip(trace["lon"], trace["lat"], strict=True):
        if x is None:
            out.append([])
        else:
            out[-1].append((x, y))
    return [s for s in out if s]


def vertices_index(net: RoadNetwork) -> dict[tuple[float, float], int]:
    return {tuple(p): i for i, p in enumerate(net.node_lonlat.tolist())}


def test_a_route_avoids_a_road_closed_on_its_way(app, r, sample):
    from command.models import Resource
    from layouts.operator import trips

    fp = r.zrange(sample.alerts_open, 0, -1)[-1].decode()
    alert = orjson.loads(r.get(sample.alert(fp)))
    unit = next(Resource.model_validate_json(v) for v in r.hvals(sample.resources)
                if Resource.model_validate_json(v).status.value == "available")
    dispatch(r, sample, fingerprint=fp, level=alert["level"], resource_ids=[unit.id], operator="op",
             now=int(r.get(sample.clock)))
    net = RoadNetwork.from_geojson(orjson.loads(r.get(sample.roads)))
    before = trips.unit_routes(r, sample, net, [], None)
    mine = [x for x in before if x["resource_id"] == unit.id][0]["coords"]
    road = mine[1:-1]
    mid = road[len(road) // 2]  # close the road at the middle of the route
    closure = {"id": "X-1", "category": "road_closed", "lon": mid[0], "lat": mid[1], "radius_m": 100.0,
               "opened": 0, "closed": None}
    after = [x for x in trips.unit_routes(r, sample, net, [closure], 10) if x["resource_id"] == unit.id][0]["coords"]
    assert mid not in after and after != mine
    assert after[0] == mine[0] and after[-1] == mine[-1]


def test_the_base_map_setting(tmp_path):
    assert resolve_base(Settings(map_base="vector")).kind == "vector"
    assert resolve_base(Settings(map_base="vector", map_landmarks=None)).landmarks is None
    t = resolve_base(Settings(map_base="https://tiles.example.org/{z}/{x}/{y}.png"))
    assert (t.kind, t.vector, t.tiles) == ("tiles", False, "https://tiles.example.org/{z}/{x}/{y}.png")
    s = resolve_base(Settings(map_base="https://maps.example.org/styles/city/style.json"))
    assert (s.kind, s.style) == ("style", "https://maps.example.org/styles/city/style.json")
    # the older ECD_MAP_TILES still works
    assert resolve_base(Settings(map_tiles="https://t.example.org/{z}/{x}/{y}.png")).kind == "tiles"
    with pytest.raises(MapBaseError, match="needs"):
        resolve_base(Settings(map_base="https://tiles.example.org/tile.png"))
    with pytest.raises(MapBaseError, match="no such MBTiles"):
        resolve_base(Settings(map_base=str(tmp_path / "none.mbtiles")))
    with pytest.raises(MapBaseError, match="expected vector"):
        resolve_base(Settings(map_base="satellite"))
    vec = make_mbtiles(tmp_path / "vec.mbtiles", fmt="pbf")
    with pytest.raises(MapBaseError, match="pbf"):
        resolve_base(Settings(map_base=str(vec)))
    junk = tmp_path / "junk.mbtiles"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(MapBaseError, match="not a readable MBTiles"):
        resolve_base(Settings(map_base=str(junk)))


def make_mbtiles(path, fmt="png"):
    """A tiny MBTiles file: one tile at z=1, x=0, y=0 (XYZ; stored as TMS row 1)."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE metadata (name TEXT, value TEXT)")
    db.execute("CREATE TABLE tiles (zoom_level INTEGER, tile_column INTEGER, tile_row INTEGER, tile_data BLOB)")
    db.executemany("INSERT INTO metadata VALUES (?, ?)", [("name", "test"), ("format", fmt)])
    db.execute("INSERT INTO tiles VALUES (1, 0, 1, ?)", (PNG,))
    db.commit()
    db.close()
    return path


def test_an_mbtiles_base_is_served_by_the_app_to_map_readers_only(redis_url, tmp_path, r):
    from app import create_app
    from layouts.operator.figure import build_figure

    path = make_mbtiles(tmp_path / "city.mbtiles")
    app = create_app(Settings(data_dir=tmp_path / "var", map_base=str(path)), redis_url=redis_url)
    c = app.server.test_client()
    assert c.get("/map/tiles/1/0/0").status_code in (302, 401)  # signed out
    assert c.post("/login", data={"username": "fire", "password": "flood-demo"}).status_code == 302
    assert c.get("/map/tiles/1/0/0").status_code == 403  # a department does not read the map page
    c = app.server.test_client()
    assert c.post("/login", data={"username": "operator", "password": "flood-demo"}).status_code == 302
    got = c.get("/map/tiles/1/0/0")
    assert got.status_code == 200 and got.data == PNG and got.mimetype == "image/png"
    assert c.get("/map/tiles/1/1/1").status_code == 204  # in range, no tile there: empty
    for bad in ("/map/tiles/1/2/0", "/map/tiles/1/0/7", "/map/tiles/25/0/0", "/map/tiles/3/99999999/0"):
        assert c.get(bad).status_code == 404, bad
    # the map draws those tiles under everything, from this app, and no street layers of its own
    keys = Keys(run_replay(r, SCENARIOS / "rule_threshold").namespace)
    with app.server.test_request_context("/", base_url="http://dash.example:8050"):
        fig, _ = build_figure(r, keys, "en", app.server.config["ECD_MAP_BASE"])
    first = fig["layout"]["map"]["layers"][0]
    assert first["sourcetype"] == "raster" and first["source"] == ["http://dash.example:8050/map/tiles/{z}/{x}/{y}"]
    assert not any((x.get("name") or "").startswith("streets-") for x in fig["layout"]["map"]["layers"])


def test_without_an_mbtiles_base_the_tile_route_has_nothing(app):
    c = app.server.test_client()
    assert c.post("/login", data={"username": "operator", "password": "flood-demo"}).status_code == 302
    assert app.server.config["ECD_MAP_BASE"] == VECTOR.__class__(landmarks=SAMPLE_DATA / "landmarks.geojson")
    assert c.get("/map/tiles/1/0/0").status_code == 404
