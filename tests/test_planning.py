"""Dispatch by deadline, pure parts (docs/dispatch.md): travel on the road network (bridges, one-way
streets, closures), deadlines, and sharing scarce units where one alert at a time gets it wrong."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from command.engine.recommend import PlanContext, recommend, recommendation_stage
from command.models import Incident, Resource
from command.planning.assignment import assign, greedy, late_minutes
from command.planning.closures import Closure, in_force, merge_closure
from command.planning.deadlines import NEXT_LEVEL, RESPOND_WITHIN, alert_deadline, level_weight
from command.planning.profiles import TypeProfile
from command.planning.roads import RoadNetwork, RoadsError, parse_roads, roads_document
from command.rules import Recommend, Rule, RuleError, parse_rules
from command.scenarios.load import ScenarioError, load_scenario

from .conftest import SCENARIOS

T0 = 1_784_000_000_000  # 2026-07-14T11:33:20+08:00
MIN = 60_000
LAT_KM = 1 / 111.2  # degrees of latitude in a km


def road(coords, name="", speed=30, **props):
    return {"type": "Feature", "properties": {"name": name, "speed_kmh": speed, **props},
            "geometry": {"type": "LineString", "coordinates": coords}}


def fc(*features):
    return {"type": "FeatureCollection", "features": list(features)}


def line(lon0, lon1, lat, n=8):
    return [[round(lon0 + (lon1 - lon0) * k / n, 6), lat] for k in range(n + 1)]


def unit(rid, lat, lon, rtype="rescue_crew", name=""):
    return Resource(id=rid, department="fire_rescue", type=rtype, lat=lat, lon=lon, name=name or rid)


def alert(fp="a", subject="WL-1", lat=30.5, lon=114.3, level="red", **extra):
    return {"fingerprint": fp, "rule": "r", "subject": subject, "subject_type": "station", "level": level,
            "lat": lat, "lon": lon, "opened_at": T0, "updated_at": T0, **extra}


# ---- routing ---------------------------------------------------------------------------------------
# A river along latitude 30.5 with a road on each bank (30.505 north, 30.495 south) from 114.30 to
# 114.36, crossed only by the Shahe Bridge at the east end.
NORTH, SOUTH = 30.505, 30.495
RIVER = fc(road(line(114.30, 114.36, NORTH), "North Bank Road"),
           road(line(114.30, 114.36, SOUTH), "South Bank Road"),
           road([[114.36, SOUTH], [114.36, NORTH]], "Shahe Bridge", kind="bridge"))


def test_the_nearest_unit_across_the_river_loses_to_a_farther_one_on_the_same_side():
    net = RoadNetwork.from_geojson(RIVER)
    target = alert(lat=NORTH - 0.0002, lon=114.30)
    across = unit("across", SOUTH + 0.0002, 114.30, name="Crew South")  # 1.1 km away, over the water
    same = unit("same", NORTH, 114.325, name="Crew North")  # 2.4 km away on the same bank
    rec = recommend(target, [Recommend("rescue_crew", 2)], [across, same], now=T0, network=net)
    assert [i.resource_id for i in rec.items] == ["same", "across"]
    first, second = rec.items
    assert first.distance_km > second.distance_km  # the straight line would have got it wrong
    assert first.via == ["North Bank Road"] and first.by_road
    assert second.via == ["South Bank Road", "Shahe Bridge", "North Bank Road"]
    assert second.route_km == pytest.approx(2 * 5.76 + 1.11, abs=0.2)  # down to the bridge and back
    assert "by road via Shahe Bridge" in second.reason
    assert first.travel_min < 6 < 25 < second.travel_min


def test_a_one_way_street_is_driven_only_the_way_it_is_drawn():
    # a direct street drawn west (one way) and a two-way detour through a street to the north
    direct = road([[114.32, 30.5], [114.31, 30.5], [114.30, 30.5]], "Market Street", oneway=True)
    detour = road([[114.30, 30.5], [114.30, 30.51], [114.32, 30.51], [114.32, 30.5]], "Loop Road")
    net = RoadNetwork(parse_roads(fc(direct, detour)))
    west, east = np.array([[114.30, 30.5]]), (114.32, 30.5)
    to_east = net.trips(east, west, 40)  # against the one-way street: round by the Loop Road
    to_west = net.trips((114.30, 30.5), np.array([[114.32, 30.5]]), 40)  # with it
    assert to_east.route(0).via == ("Loop Road",)
    assert to_west.route(0).via == ("Market Street",)
    assert to_east.route(0).metres == pytest.approx(1915 + 2224, rel=0.01)
    assert to_west.route(0).metres == pytest.approx(1915, rel=0.01)
    assert to_east.seconds[0] > 2 * to_west.seconds[0]


def test_a_closure_that_cuts_the_only_road_makes_the_target_unreachable():
    main = road(line(114.30, 114.34, 30.50, 4), "Main Road")
    spur = road([[114.34, 30.50], [114.34, 30.503], [114.34, 30.506], [114.34, 30.509]], "Dead End Lane")
    net = RoadNetwork.from_geojson(fc(main, spur))
    target = alert(lat=30.509, lon=114.3405)
    crew = unit("c", 30.50, 114.30)
    assert recommend(target, [Recommend("rescue_crew")], [crew], now=T0, network=net).resource_ids == ["c"]
    closed = [{"id": "INC-1", "category": "road_closed", "lat": 30.5015, "lon": 114.34, "radius_m": 100,
               "opened": T0 - MIN, "closed": None}]
    rec = recommend(target, [Recommend("rescue_crew")], [crew], now=T0, network=net, closures=closed)
    assert rec.items == []
    assert rec.shortfall == [{"type": "rescue_crew", "wanted": 1, "found": 0, "unreachable": 1}]
    assert "1 available rescue crew cannot reach WL-1 by road (roads closed)." in rec.reason
    # closed later than this plan, or already reopened: no effect
    later = [dict(closed[0], opened=T0 + MIN)]
    reopened = [dict(closed[0], closed=T0)]
    for records in (later, reopened):
        assert recommend(target, [Recommend("rescue_crew")], [crew], now=T0, network=net,
                         closures=records).resource_ids == ["c"]


def test_a_closure_forces_a_detour():
    low = road(line(114.30, 114.34, 30.50, 4), "Riverside Avenue")
    high = road([[114.30, 30.50], [114.30, 30.51], [114.34, 30.51], [114.34, 30.50]], "Hill Road")
    net = RoadNetwork.from_geojson(fc(low, high))
    target = alert(lat=30.50, lon=114.34)
    crew = unit("c", 30.50, 114.30)
    before = recommend(target, [Recommend("rescue_crew")], [crew], now=T0, network=net).items[0]
    breach = [{"id": "INC-9", "category": "levee_breach", "lat": 30.4985, "lon": 114.32, "radius_m": 500,
               "opened": T0, "closed": None}]
    after = recommend(target, [Recommend("rescue_crew")], [crew], now=T0, network=net, closures=breach).items[0]
    assert before.via == ["Riverside Avenue"] and after.via == ["Hill Road"]
    assert after.route_km == pytest.approx(before.route_km + 2 * 1.11, abs=0.05)
    assert after.travel_min > before.travel_min


def test_access_legs_at_10_kmh_and_points_off_the_network():
    net = RoadNetwork.from_geojson(fc(road(line(114.30, 114.34, 30.50, 4), "Main Road", speed=36)))
    far_away = np.array([[114.30, 30.50 + 0.5 * LAT_KM], [114.30, 30.60]])  # 0.5 km off the road; 11 km off
    trips = net.trips((114.34, 30.50), far_away, 60)
    road_s = 3853 / 10  # 3.85 km at 36 km/h
    assert trips.seconds[0] == pytest.approx(road_s + 500 / (10 / 3.6), rel=0.01)
    assert trips.by_road.tolist() == [True, False]
    straight = 11_760  # metres, beyond 2 km from every road: straight line x 1.3 at the type's 60 km/h
    assert trips.seconds[1] == pytest.approx(straight * 1.3 / (60 / 3.6), rel=0.01)


def test_a_road_without_a_speed_takes_the_unit_types_speed():
    net = RoadNetwork.from_geojson(fc(road(line(114.30, 114.34, 30.50, 4), "Track", speed=None)))
    units = np.array([[114.30, 30.50]])
    slow, fast = net.trips((114.34, 30.50), units, 20), net.trips((114.34, 30.50), units, 60)
    assert slow.seconds[0] == pytest.approx(3 * fast.seconds[0], rel=1e-6)


@pytest.mark.parametrize(("doc", "message"), [
    ({"type": "Feature"}, "roads.geojson: expected a GeoJSON FeatureCollection"),
    (fc(), "roads.geojson: no road lines"),
    (fc({"type": "Feature", "properties": {"name": "Pier"}, "geometry": {"type": "Point", "coordinates": [1, 2]}}),
     "roads.geojson: feature #1 ('Pier'): geometry must be a LineString or MultiLineString, got 'Point'"),
    (fc(road([[114.3, 30.5], [114.31, 30.5]], "A"), road([[114.3, 30.5], [114.31, 30.5]], "B", speed=-5)),
     "roads.geojson: feature #2 ('B'): `speed_kmh` must be a number above 0, got -5"),
    (fc(road([[114.3, 30.5], [114.31, 30.5]], "C", oneway="yes")),
     "roads.geojson: feature #1 ('C'): `oneway` must be true or false, got 'yes'"),
    (fc(road([[114.3, 30.5]], "D")), "roads.geojson: feature #1 ('D'): a line needs at least two positions"),
    (fc(road([[114.3, 30.5], [30.5, 214.3]], "E")), "roads.geojson: feature #1 ('E'): position #2 [30.5, 214.3] out of range"),
    (fc(road([[114.3, 30.5], [114.3, 30.5]], "F")), "roads.geojson: feature #1 ('F'): the line has no length"),
])
def test_a_bad_road_file_is_refused_naming_the_file_and_feature(doc, message):
    with pytest.raises(RoadsError) as err:
        parse_roads(doc)
    assert err.value.message.startswith(message)


def test_multilinestrings_and_shared_vertices_join():
    doc = fc({"type": "Feature", "properties": {"name": "Ring", "speed_kmh": 30},
              "geometry": {"type": "MultiLineString", "coordinates": [line(114.30, 114.31, 30.5, 2),
                                                                    [[114.31, 30.5], [114.31, 30.51]]]}})
    norm = roads_document(doc)
    assert [f["geometry"]["type"] for f in norm["features"]] == ["LineString", "LineString"]
    net = RoadNetwork.from_geojson(norm)
    assert (net.n_nodes, net.n_edges) == (4, 6)  # three segments, both ways, joined at [114.31, 30.5]
    assert net.trips((114.31, 30.51), np.array([[114.30, 30.5]]), 30).route(0).via == ("Ring",)


def test_the_scenario_names_its_road_file_and_a_bad_one_stops_it(tmp_path):
    sc = load_scenario(SCENARIOS / "jiangcheng_flood")
    assert sc.roads is not None and len(sc.roads["features"]) > 100
    net = RoadNetwork.from_geojson(sc.roads)
    assert net.n_edges >= 600
    folder = tmp_path / "s"
    shutil.copytree(SCENARIOS / "rule_threshold", folder)
    doc = (folder / "scenario.yaml").read_text().replace("../tiny_common", str(SCENARIOS / "tiny_common"))
    (folder / "scenario.yaml").write_text(doc)
    assert load_scenario(folder).roads == sc.roads  # none beside it: the sample's
    (folder / "roads.geojson").write_text(json.dumps(fc(road([[114.15, 30.05], [114.16, 30.05]], "Dyke Road"))))
    assert load_scenario(folder).roads["features"][0]["properties"]["name"] == "Dyke Road"  # beside it
    (folder / "mine.geojson").write_text(json.dumps(fc(road([[114.15, 30.05]], "Broken"))))
    (folder / "scenario.yaml").write_text(doc + "roads: mine.geojson\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(folder)
    assert "mine.geojson: feature #1 ('Broken'): a line needs at least two positions" in err.value.message


# ---- closures --------------------------------------------------------------------------------------
def _inc(category="road_closed", status="open", t=T0, **kw):
    return Incident(id="INC-7", time=t, category=category, lat=30.5, lon=114.3, status=status, **kw)


def test_closures_open_with_the_report_and_end_with_the_closed_one():
    assert merge_closure(None, _inc("power_outage")) is None
    rec = merge_closure(None, _inc())
    assert rec == {"id": "INC-7", "category": "road_closed", "lat": 30.5, "lon": 114.3, "radius_m": 100.0,
                   "opened": T0, "closed": None}
    breach = merge_closure(rec, _inc("levee_breach", t=T0 + MIN))
    assert breach["radius_m"] == 500.0 and breach["opened"] == T0
    ended = merge_closure(breach, _inc("levee_breach", "closed", t=T0 + 60 * MIN))
    assert ended["closed"] == T0 + 60 * MIN
    assert in_force([ended], T0 + 30 * MIN) == [Closure("INC-7", 114.3, 30.5, 500.0)]
    assert in_force([ended], T0 + 60 * MIN) == [] and in_force([ended], T0 - 1) == []


# ---- deadlines -------------------------------------------------------------------------------------
def test_a_rising_alert_is_due_when_it_is_projected_to_reach_the_next_level():
    rising = alert(level="orange", next_level="red", next_level_eta=T0 + 40 * MIN)
    d = alert_deadline(rising, respond_within_ms=60 * MIN)
    assert (d.at, d.basis, d.next_level) == (T0 + 40 * MIN, NEXT_LEVEL, "red")
    # respond_within comes first: it wins
    d = alert_deadline(rising, respond_within_ms=30 * MIN)
    assert (d.at, d.basis) == (T0 + 30 * MIN, RESPOND_WITHIN)
    # counted from when the alert took its level (it rose later than it opened)
    assert alert_deadline(alert(), 30 * MIN, since=T0 + 90 * MIN).at == T0 + 120 * MIN
    assert alert_deadline(alert(), None).at is None
    assert [level_weight(k) for k in range(3)] == [1, 3, 9]


def test_units_are_marked_late_and_none_on_time_still_proposes_the_earliest():
    net = RoadNetwork.from_geojson(RIVER)
    rising = alert(lat=NORTH, lon=114.30, level="orange", next_level="red", next_level_eta=T0 + 20 * MIN)
    near = unit("near", NORTH, 114.315, name="Crew 1")  # 1.44 km, 2.9 min by road, + 5 min set-up
    far = unit("far", NORTH, 114.36, name="Crew 2")  # 5.8 km, 11.5 min by road
    crew = TypeProfile(speed_kmh=50, setup_ms=5 * MIN)
    rec = recommend(rising, [Recommend("rescue_crew", 2, crew)], [far, near], now=T0, network=net,
                    tz="Asia/Shanghai", respond_within_ms=60 * MIN)
    assert rec.deadline == T0 + 20 * MIN and rec.deadline_basis == NEXT_LEVEL and rec.deadline_level == "red"
    first, second = rec.items
    assert (first.resource_id, first.late_min) == ("near", 0)
    assert first.leave_by == pytest.approx(T0 + 20 * MIN - 5 * MIN - first.travel_min * MIN, abs=3_000)
    assert first.margin_min == 12
    assert first.reason == ("Crew 1 \u2014 leave by 11:45; leaving now, working by 11:42, 12 min before red "
                            "(1.4 km by road via North Bank Road)")
    assert (second.resource_id, second.late_min, second.margin_min) == ("far", 0, 3)
    # red in 5 min: nobody can make it; the earliest is still proposed, late, and the reason says so
    soon = dict(rising, next_level_eta=T0 + 5 * MIN)
    rec = recommend(soon, [Recommend("rescue_crew", 1, crew)], [far, near], now=T0, network=net, tz="Asia/Shanghai")
    assert rec.resource_ids == ["near"]
    item = rec.items[0]
    assert item.late_min == 3 and item.margin_min == -3
    assert item.reason.startswith("Crew 1 \u2014 leave now: working by 11:42, 3 min after red")
    assert rec.reason == "No rescue crew can be working before red: the earliest is proposed."


# ---- sharing scarce units --------------------------------------------------------------------------
def test_assignment_beats_greedy_on_a_hand_worked_case():
    """Red A and orange B, both due in 30 min; crew 1 is 10 min from A and 15 from B, crew 2 is 25
    from A and 50 from B. Greedy gives A its nearest (crew 1), and B is 20 min late (weighted 60).
    Giving A crew 2 (on time) and B crew 1 (on time) is late by nothing."""
    travel = np.array([[10.0, 25.0], [15.0, 50.0]]) * 60  # seconds; rows A, B; columns crew 1, crew 2
    late = np.vstack([late_minutes(T0 + travel[i] * 1000, T0 + 30 * MIN) for i in range(2)])
    weight = [level_weight(2), level_weight(1)]
    assert greedy(travel, late, weight) == [0, 1]
    assert assign(travel, late, weight) == [1, 0]
    # the same through the recommendation stage, on a straight line at 78 km/h (1 km a minute, x 1.3)
    km = LAT_KM
    crew = TypeProfile(speed_kmh=78)
    rule = Rule(id="rr", kind="rate_of_rise", levels=("yellow", "orange", "red"),
                recommend=(Recommend("rescue_crew", 1, crew),), respond_within_ms=30 * MIN)
    a = alert("A", "WL-A", lat=30.0, lon=114.0, level="red")
    b = alert("B", "WL-B", lat=30.0 + 25 * km, lon=114.0, level="orange")
    crews = [unit("crew1", 30.0 + 10 * km, 114.0), unit("crew2", 30.0 - 25 * km, 114.0)]
    recs = recommendation_stage([(a, rule, "open"), (b, rule, "open")], lambda: crews)
    assert {r.subject: r.resource_ids for r in recs} == {"WL-A": ["crew2"], "WL-B": ["crew1"]}
    assert all(i.late_min == 0 for r in recs for i in r.items)


def test_lateness_then_travel_and_an_empty_slot_goes_to_the_lowest_level():
    # one unit, two alerts on time either way: the shorter trip wins
    travel = np.array([[600.0], [300.0]])
    assert assign(travel, np.zeros((2, 1)), [1, 1]) == [None, 0]
    # one unit: it goes to the red alert even though it is late there and on time at the yellow one
    late = np.array([[30.0], [0.0]])
    assert assign(np.array([[900.0], [60.0]]), late, [9, 1]) == [0, None]
    # a unit that cannot reach a target is never given to it
    assert assign(np.array([[np.inf, 100.0]]), np.zeros((1, 2)), [1]) == [1]
    assert assign(np.array([[np.inf]]), np.zeros((1, 1)), [1]) == [None]


def test_held_units_name_the_alert_that_holds_them():
    crew = TypeProfile(speed_kmh=50)
    rule = Rule(id="rapid-rise", kind="rate_of_rise", levels=("yellow", "orange", "red"),
                recommend=(Recommend("rescue_crew", 1, crew),), respond_within_ms=60 * MIN)
    red = alert("R", "WL-017", level="red", rule="rapid-rise", next_level=None)
    orange = alert("O", "WL-016", lon=114.31, level="orange", rule="rapid-rise", next_level="red",
                   next_level_eta=T0 + 40 * MIN)
    ctx = PlanContext(alerts=[orange], tz="Asia/Shanghai",
                      recommendations={"O": {"items": [{"resource_id": "c3"}], "level": "orange",
                                             "deadline": T0 + 40 * MIN, "deadline_basis": NEXT_LEVEL,
                                             "deadline_level": "red"}},
                      ruleset=parse_rules({"rules": [{"id": "rapid-rise", "kind": "rate_of_rise", "window": "1h",
                                                     "above": {"orange": 0.3}, "recommend": [{"type": "rescue_crew"}]}]}))
    recs = recommendation_stage([(red, rule, "open")], lambda: [unit("c3", 30.5, 114.3, name="Rescue Crew 3")], ctx)
    assert [(r.subject, r.resource_ids) for r in recs] == [("WL-017", ["c3"]), ("WL-016", [])]
    assert recs[1].reason == ("Re-planned at 11:33 when WL-017 (red, rapid-rise) opened. "
                              "Rescue Crew 3 is held for WL-017 (red, rapid-rise), due by 12:33.")
    assert recs[0].held == [] and recs[1].held[0]["for_fingerprint"] == "R"


# ---- rules.yaml ------------------------------------------------------------------------------------
def test_resource_types_and_respond_within_in_rules_yaml():
    rs = parse_rules({"resource_types": {"pump": {"speed_kmh": 40, "setup": "30m"}, "rescue_boat": None},
                      "rules": [{"id": "r", "kind": "threshold", "above": "thresholds", "respond_within": "45m",
                                 "recommend": [{"type": "pump", "count": 2}, {"type": "ambulance"}]}]})
    assert rs.resource_types["pump"] == TypeProfile(40.0, 30 * MIN)
    assert rs.resource_types["rescue_boat"] == TypeProfile()
    rule = rs.rules[0]
    assert rule.respond_within_ms == 45 * MIN
    assert rule.recommend[0].profile == TypeProfile(40.0, 30 * MIN) and rule.recommend[1].profile is None
    sample = parse_rules(__import__("yaml").safe_load((SCENARIOS.parent / "rules.yaml").read_text()))
    assert sample.by_id("rapid-rise").respond_within_ms == 30 * MIN
    assert sample.resource_types["rescue_crew"].setup_ms == 5 * MIN


@pytest.mark.parametrize(("doc", "message"), [
    ({"resource_types": [1]}, "rules.yaml: `resource_types` must be a mapping"),
    ({"resource_types": {"pump": {"speed_kmh": 0}}}, "rules.yaml: resource_types.pump: `speed_kmh` must be a number above 0"),
    ({"resource_types": {"pump": {"speed": 40}}}, "rules.yaml: resource_types.pump: unknown key(s) speed"),
    ({"resource_types": {"pump": {"setup": "soon"}}}, "rules.yaml: resource_types.pump: `setup`:"),
    ({"rules": [{"id": "r", "kind": "threshold", "above": "thresholds", "respond_within": "0m"}]},
     "rules.yaml: rule 'r': `respond_within` must be positive"),
])
def test_bad_planning_keys_are_refused(doc, message):
    doc.setdefault("rules", [{"id": "ok", "kind": "stale", "after": "1h", "level": "yellow"}])
    with pytest.raises(RuleError) as err:
        parse_rules(doc)
    assert err.value.message.startswith(message)
