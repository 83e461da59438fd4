"""Recommendations: nearest available first, never an unavailable resource, shortfalls said."""

import pytest

from command.engine.recommend import haversine_km, recommend
from command.models import Resource
from command.rules import Recommend

ALERT = {"fingerprint": "f", "rule": "r", "subject": "WL-A", "level": "red", "lat": 30.0, "lon": 114.0}


def res(rid, rtype, lat, lon, status="available", dept="fire_rescue", cap=None):
    return Resource(id=rid, department=dept, type=rtype, lat=lat, lon=lon, status=status, capacity=cap)


def test_haversine_known_distance():
    # one degree of latitude is about 111.2 km anywhere
    assert haversine_km(30.0, 114.0, 31.0, 114.0) == pytest.approx(111.2, abs=0.1)
    assert haversine_km(30.0, 114.0, 30.0, 114.0) == 0


def test_nearest_available_of_each_type_in_order():
    resources = [
        res("far", "pump", 30.2, 114.0, dept="public_works"),
        res("near", "pump", 30.01, 114.0, dept="water_authority", cap=800),
        res("broken", "pump", 30.0, 114.0, status="out_of_service"),
        res("busy", "pump", 30.0, 114.0, status="dispatched"),
        res("onscene", "pump", 30.0, 114.0, status="on_scene"),
        res("boat", "rescue_boat", 30.05, 114.0),
    ]
    rec = recommend(ALERT, [Recommend("pump", 2), Recommend("rescue_boat", 1)], resources, now=1)
    assert rec.resource_ids == ["near", "far", "boat"]
    near = rec.items[0]
    assert near.distance_km == pytest.approx(1.11, abs=0.01)
    assert near.department == "water_authority"
    assert near.reason == "nearest available pump to WL-A: 1.1 km, water authority, capacity 800"
    assert rec.items[1].reason.startswith("2nd nearest available pump")
    assert rec.shortfall == []


def test_shortfall_when_too_few_are_available():
    resources = [res("b1", "rescue_boat", 30.1, 114.0), res("b2", "rescue_boat", 30.0, 114.0, status="dispatched")]
    rec = recommend(ALERT, [Recommend("rescue_boat", 3), Recommend("ambulance", 1)], resources, now=1)
    assert rec.resource_ids == ["b1"]
    assert rec.shortfall == [{"type": "rescue_boat", "wanted": 3, "found": 1},
                             {"type": "ambulance", "wanted": 1, "found": 0}]


def test_no_recommendation_without_a_request_or_a_position():
    assert recommend(ALERT, [], [res("b", "pump", 30, 114)], now=1) is None
    assert recommend(dict(ALERT, lat=None), [Recommend("pump")], [res("b", "pump", 30, 114)], now=1) is None


def test_recommendation_stage_asks_for_resources_once_and_only_when_a_rule_asks():
    from types import SimpleNamespace

    from command.engine.recommend import recommendation_stage

    calls = []

    def resources():
        calls.append(1)
        return [res("p", "pump", 30.01, 114.0)]

    quiet = SimpleNamespace(recommend=[])
    asks = SimpleNamespace(recommend=[Recommend("pump", 1)])
    assert recommendation_stage([(dict(ALERT, updated_at=5), quiet), (ALERT, None)], resources) == []
    assert calls == []
    a, b = dict(ALERT, fingerprint="a", updated_at=5), dict(ALERT, fingerprint="b", updated_at=7)
    nowhere = dict(ALERT, fingerprint="c", lat=None, updated_at=9)
    recs = recommendation_stage([(a, asks), (nowhere, asks), (b, asks), (a, quiet)], resources)
    assert calls == [1]
    # in order, made at each alert's own time (data time), none for an alert with no position
    assert [(x.fingerprint, x.created_at, x.resource_ids) for x in recs] == [("a", 5, ["p"]), ("b", 7, ["p"])]
