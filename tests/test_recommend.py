"""Recommendations: earliest arrival first, never an unavailable unit, deadlines and shortfalls said,
units shared across the open alerts (docs/dispatch.md)."""

import pytest

from command.engine.recommend import PlanContext, haversine_km, recommend, recommendation_stage
from command.models import Resource
from command.planning.profiles import TypeProfile
from command.rules import Recommend, Rule

T0 = 1_784_000_000_000  # 2026-07-14T11:33:20+08:00
MIN = 60_000
ALERT = {"fingerprint": "f", "rule": "r", "subject": "WL-A", "level": "red", "lat": 30.0, "lon": 114.0,
         "opened_at": T0, "updated_at": T0}


def res(rid, rtype, lat, lon, status="available", dept="fire_rescue", cap=None, name=""):
    return Resource(id=rid, department=dept, type=rtype, lat=lat, lon=lon, status=status, capacity=cap, name=name)


def test_haversine_known_distance():
    # one degree of latitude is about 111.2 km anywhere
    assert haversine_km(30.0, 114.0, 31.0, 114.0) == pytest.approx(111.2, abs=0.1)
    assert haversine_km(30.0, 114.0, 30.0, 114.0) == 0


def test_earliest_available_of_each_type_in_order():
    resources = [
        res("far", "pump", 30.2, 114.0, dept="public_works"),
        res("near", "pump", 30.01, 114.0, dept="water_authority", cap=800, name="Pump 3"),
        res("broken", "pump", 30.0, 114.0, status="out_of_service"),
        res("busy", "pump", 30.0, 114.0, status="dispatched"),
        res("onscene", "pump", 30.0, 114.0, status="on_scene"),
        res("boat", "rescue_boat", 30.05, 114.0),
    ]
    rec = recommend(ALERT, [Recommend("pump", 2), Recommend("rescue_boat", 1)], resources, now=T0, tz="Asia/Shanghai")
    assert rec.resource_ids == ["near", "far", "boat"]
    near = rec.items[0]
    assert near.distance_km == pytest.approx(1.11, abs=0.01)  # the straight line, as before
    assert near.department == "water_authority"
    # no road network: the straight line x 1.3 at the default 40 km/h
    assert near.route_km == pytest.approx(1.11 * 1.3, abs=0.01) and near.by_road is False
    assert near.travel_min == pytest.approx(1.11 * 1.3 / 40 * 60, abs=0.1)
    assert near.arrive_at == pytest.approx(T0 + near.travel_min * MIN, abs=3_000)
    assert near.deadline is None and near.leave_by is None and near.late_min == 0  # no deadline asked for
    assert near.reason == "Pump 3 \u2014 leave now: working by 11:36 (about 1.4 km: no road map here, straight line x 1.3)"
    assert rec.shortfall == [] and rec.deadline is None


def test_shortfall_when_too_few_are_available():
    resources = [res("b1", "rescue_boat", 30.1, 114.0), res("b2", "rescue_boat", 30.0, 114.0, status="dispatched")]
    rec = recommend(ALERT, [Recommend("rescue_boat", 3), Recommend("ambulance", 1)], resources, now=T0)
    assert rec.resource_ids == ["b1"]
    assert rec.shortfall == [{"type": "rescue_boat", "wanted": 3, "found": 1},
                             {"type": "ambulance", "wanted": 1, "found": 0}]


def test_no_recommendation_without_a_request_or_a_position():
    assert recommend(ALERT, [], [res("b", "pump", 30, 114)], now=T0) is None
    assert recommend(dict(ALERT, lat=None), [Recommend("pump")], [res("b", "pump", 30, 114)], now=T0) is None


def test_set_up_time_counts_toward_arrival_and_the_type_speed_off_the_road():
    crew = TypeProfile(speed_kmh=20, setup_ms=15 * MIN)
    rec = recommend(ALERT, [Recommend("rescue_crew", 1, crew)], [res("c", "rescue_crew", 30.01, 114.0)], now=T0,
                    respond_within_ms=30 * MIN)
    item = rec.items[0]
    assert item.setup_min == 15.0
    assert item.travel_min == pytest.approx(1.112 * 1.3 / 20 * 60, abs=0.1)  # 4.3 min at 20 km/h
    assert item.arrive_at == pytest.approx(T0 + (item.travel_min + 15) * MIN, abs=3_000)
    assert item.leave_by == pytest.approx(T0 + 30 * MIN - (item.travel_min + 15) * MIN, abs=3_000)
    assert item.margin_min == 10 and item.late_min == 0


def _rule(rid, *requests, respond_within_ms=None):
    return Rule(id=rid, kind="threshold", levels=("yellow", "orange", "red"), recommend=tuple(requests),
                respond_within_ms=respond_within_ms)


def test_the_stage_asks_for_resources_once_and_only_when_a_rule_asks():
    calls = []

    def resources():
        calls.append(1)
        return [res("p", "pump", 30.01, 114.0), res("q", "pump", 30.05, 114.0)]

    quiet = _rule("quiet")
    asks = _rule("asks", Recommend("pump", 1))
    assert recommendation_stage([(dict(ALERT, updated_at=5), quiet), (ALERT, None)], resources) == []
    assert calls == []
    a = dict(ALERT, fingerprint="a", updated_at=T0)
    b = dict(ALERT, fingerprint="b", updated_at=T0 + MIN)
    nowhere = dict(ALERT, fingerprint="c", lat=None, updated_at=T0)
    recs = recommendation_stage([(a, asks, "open"), (nowhere, asks, "open"), (b, asks, "open"), (a, quiet, "open")],
                                resources)
    assert calls == [1]
    # made at each event's own time (data time); b, opening later on the same spot, gets the other pump
    assert [(x.fingerprint, x.created_at, x.resource_ids) for x in recs] == [("a", T0, ["p"]), ("b", T0 + MIN, ["q"])]


def test_alerts_of_one_instant_are_planned_together():
    """Two alerts opening at the same moment share the one unit at once: no passing recommendation."""
    crew = res("crew", "rescue_crew", 30.0, 114.05, name="Crew 3")
    rule = _rule("rapid-rise", Recommend("rescue_crew", 1), respond_within_ms=30 * MIN)
    near = dict(ALERT, fingerprint="near", rule="rapid-rise", subject="WL-N", lon=114.06, level="orange")
    far = dict(ALERT, fingerprint="far", rule="rapid-rise", subject="WL-F", lon=114.0, level="red")
    recs = recommendation_stage([(near, rule, "open"), (far, rule, "open")], lambda: [crew])
    assert [(x.fingerprint, x.resource_ids) for x in recs] == [("near", []), ("far", ["crew"])]
    assert recs[0].held[0]["resource_id"] == "crew" and recs[0].held[0]["for_subject"] == "WL-F"
    assert "Crew 3 is held for WL-F (red, rapid-rise), due by" in recs[0].reason
    assert recs[0].shortfall == [{"type": "rescue_crew", "wanted": 1, "found": 0}]


def test_a_later_alert_that_takes_a_unit_re_plans_the_other_and_says_why():
    crew = res("crew", "rescue_crew", 30.0, 114.05, name="Crew 3")
    spare = res("spare", "rescue_crew", 30.3, 114.05, name="Crew 4")
    rule = _rule("rapid-rise", Recommend("rescue_crew", 1), respond_within_ms=60 * MIN)
    first = dict(ALERT, fingerprint="one", rule="rapid-rise", subject="WL-1", lon=114.06, level="orange")
    second = dict(first, fingerprint="two", subject="WL-2", lon=114.04, level="red", opened_at=T0 + 5 * MIN,
                  updated_at=T0 + 5 * MIN)
    recs = recommendation_stage([(first, rule, "open"), (second, rule, "open")], lambda: [crew, spare],
                                PlanContext(tz="Asia/Shanghai"))
    assert [(x.fingerprint, x.resource_ids) for x in recs] == [("one", ["crew"]), ("two", ["crew"]), ("one", ["spare"])]
    replanned = recs[2]
    assert replanned.created_at == T0 + 5 * MIN
    assert replanned.reason.startswith("Re-planned at 11:38 when WL-2 (red, rapid-rise) opened.")
    assert "Crew 3 is held for WL-2 (red, rapid-rise), due by 12:38." in replanned.reason


def test_a_resolved_alert_frees_its_units():
    crew = res("crew", "rescue_crew", 30.0, 114.05)
    rule = _rule("rr", Recommend("rescue_crew", 1))
    red = dict(ALERT, fingerprint="red", rule="rr", level="red")
    orange = dict(red, fingerprint="orange", level="orange", lon=114.06)
    gone = dict(red, status="resolved", updated_at=T0 + 10 * MIN)
    recs = recommendation_stage([(red, rule, "open"), (orange, rule, "open"), (gone, rule, "resolve")], lambda: [crew])
    assert [(x.fingerprint, x.resource_ids, x.created_at) for x in recs] == [
        ("red", ["crew"], T0), ("orange", [], T0), ("orange", ["crew"], T0 + 10 * MIN)]
    assert "when WL-A (red, rr) was resolved" in recs[-1].reason


def test_an_alert_dispatched_at_its_level_is_never_re_planned():
    """Refreshing (the read model) proposes units again, except to an alert already dispatched."""
    crew = res("crew", "rescue_crew", 30.0, 114.05)
    rule = _rule("rr", Recommend("rescue_crew", 1))
    sent = dict(ALERT, fingerprint="sent")
    waiting = dict(ALERT, fingerprint="waiting", lon=114.2)
    ctx = PlanContext(alerts=[sent, waiting], served=frozenset({"sent"}), now=T0 + MIN)
    recs = recommendation_stage([(sent, rule), (waiting, rule)], lambda: [crew], ctx)
    assert [(x.fingerprint, x.resource_ids, x.created_at) for x in recs] == [("waiting", ["crew"], T0 + MIN)]
