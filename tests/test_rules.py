"""The rule vocabulary, evaluated without any server: pure inputs in, alert transitions out."""

from __future__ import annotations

import random

import orjson
import pytest

from command import i18n
from command.errors import InvalidInput
from command.models import Incident, Reading, Station, Zone
from command.rules import (
    HOUR_MS,
    STATE_VERSION,
    LevelState,
    RuleError,
    ShardEvaluator,
    describe_eta,
    fingerprint,
    parse_rules,
    step_levels,
)

M = 60_000  # one minute in ms
T0 = 1_780_000_000_000


def station(sid="S1", kind="water_level", zone=None, **th):
    return Station(id=sid, kind=kind, lon=114.0, lat=30.0, zone=zone, thresholds=th, unit="m")


def evaluator(rules_doc, stations, zones=None):
    rs = parse_rules(rules_doc)
    return ShardEvaluator(rs, {s.id: s for s in stations}, zones or {})


def feed(ev, sid, kind, values, step_min=15, start=T0):
    """Feed values at a fixed step; returns [(minute, event, level)]."""
    out = []
    for i, v in enumerate(values):
        t = start + i * step_min * M
        for ch in ev.on_reading(Reading(sid, kind, t, v)):
            out.append(((t - start) // M, ch.event, ch.alert["level"]))
    return out


THRESHOLD = {"levels": ["yellow", "orange", "red"], "rules": [
    {"id": "stage", "kind": "threshold", "match": {"kind": "water_level"}, "above": "thresholds",
     "for": "30m", "clear_margin": 0.1}]}


# ---- parsing ------------------------------------------------------------------------------------
def test_parse_accepts_the_contract_example():
    doc = {"levels": ["yellow", "orange", "red"], "rules": [
        {"id": "river-stage", "kind": "threshold", "match": {"kind": "water_level"}, "above": "thresholds",
         "for": "30m", "clear_margin": 0.05, "recommend": [{"type": "pump", "count": 2}]},
        {"id": "rapid-rise", "kind": "rate_of_rise", "match": {"kind": "water_level"}, "window": "1h",
         "above": {"orange": 0.3}, "for": "15m"},
        {"id": "heavy-rain", "kind": "accumulation", "match": {"kind": "rainfall"}, "window": "1h",
         "above": {"yellow": 30, "orange": 50}},
        {"id": "sensor-silent", "kind": "stale", "match": {"kind": "water_level"}, "after": "1h", "level": "yellow"},
        {"id": "incident-in-risk-zone", "kind": "zone_incident", "zones": {"risk": "high"},
         "categories": ["trapped_people", "levee_breach"], "level": "red",
         "recommend": [{"type": "rescue_boat", "count": 1}]},
    ]}
    rs = parse_rules(doc)
    assert [r.kind for r in rs.rules] == ["threshold", "rate_of_rise", "accumulation", "stale", "zone_incident"]
    assert rs.rules[0].for_ms == 30 * M and rs.rules[0].station_thresholds
    assert rs.rules[1].window_ms == 60 * M and rs.rules[1].bounds == {"orange": 0.3}
    assert rs.rules[3].after_ms == 60 * M and rs.rules[3].level == "yellow"
    assert rs.rules[4].zone_risk == {"high"} and rs.rules[4].recommend[0].type == "rescue_boat"


@pytest.mark.parametrize("rule,message", [
    ({"id": "x", "kind": "thresold"}, "unknown kind 'thresold'"),
    ({"id": "x", "kind": "threshold"}, "`above` must be"),
    ({"id": "x", "kind": "threshold", "above": {"purple": 1}}, "names level 'purple'"),
    ({"id": "x", "kind": "threshold", "above": {"yellow": 3, "red": 2}}, "bounds must rise"),
    ({"id": "x", "kind": "threshold", "above": {"red": 2}, "for": "soon"}, "`for`: invalid duration"),
    ({"id": "x", "kind": "rate_of_rise", "above": {"red": 2}}, "missing `window`"),
    ({"id": "x", "kind": "stale", "after": "1h", "level": "blue"}, "`level` must be one of"),
    ({"id": "x", "kind": "threshold", "above": {"red": 2}, "recommend": [{"type": "pump", "count": 0}]}, "`count`"),
    ({"kind": "threshold"}, "missing `id`"),
    ({"id": "x", "kind": "threshold", "above": {"red": 2}, "fro": "30m"}, "unknown key(s) fro for a threshold rule"),
    ({"id": "x", "kind": "threshold", "above": {"red": 2}, "match": {"knd": "rainfall"}}, "unknown `match` key(s) knd"),
])
def test_parse_errors_name_the_rule(rule, message):
    with pytest.raises(RuleError) as exc:
        parse_rules({"rules": [rule]}, source="my-rules.yaml")
    assert message in str(exc.value)
    assert str(exc.value).startswith("my-rules.yaml")


def test_duplicate_rule_ids_refused():
    rule = {"id": "x", "kind": "threshold", "above": {"red": 2}}
    with pytest.raises(RuleError, match="duplicate id"):
        parse_rules({"rules": [rule, rule]})


def test_rule_error_is_invalid_input_with_the_same_message():
    with pytest.raises(InvalidInput) as exc:
        parse_rules({"rules": [{"id": "x", "kind": "stale", "after": "1h", "level": "blue"}]}, source="r.yaml")
    err = exc.value
    assert isinstance(err, RuleError) and isinstance(err, ValueError)
    assert str(err) == err.message == "r.yaml: rule 'x': `level` must be one of ['yellow', 'orange', 'red'], got 'blue'"
    assert err.status == 422 and err.errors == {}


# ---- level mechanics ----------------------------------------------------------------------------
def test_step_levels_for_and_hysteresis():
    st = LevelState()
    bounds = {"yellow": 2.0}
    step_levels(st, bounds, 2.0, 0, for_ms=30 * M, margin=0.1)  # reaches at >= bound: pending
    assert st.held == [] and st.since == {"yellow": 0}
    step_levels(st, bounds, 2.1, 15 * M, 30 * M, 0.1)
    assert st.held == []
    step_levels(st, bounds, 2.2, 30 * M, 30 * M, 0.1)  # stayed 30 min: taken
    assert st.held == ["yellow"]
    step_levels(st, bounds, 1.95, 45 * M, 30 * M, 0.1)  # below the bound but inside the margin: kept
    assert st.held == ["yellow"]
    step_levels(st, bounds, 1.89, 60 * M, 30 * M, 0.1)  # below bound - margin: cleared
    assert st.held == [] and st.since == {}


def test_pending_that_drops_back_never_opens():
    ev = evaluator(THRESHOLD, [station(yellow=2.0, orange=2.5, red=3.0)])
    assert feed(ev, "S1", "water_level", [1.0, 2.1, 2.2, 1.5, 2.1, 1.0]) == []


def test_threshold_lifecycle_open_raise_lower_resolve():
    ev = evaluator(THRESHOLD, [station(yellow=2.0, orange=2.5, red=3.0)])
    values = [1.5, 1.8, 2.1, 2.2, 2.3, 2.6, 2.7, 2.8, 2.95, 2.4, 2.35, 1.95, 1.85]
    assert feed(ev, "S1", "water_level", values) == [
        (60, "open", "yellow"), (105, "raise", "orange"), (150, "lower", "yellow"), (180, "resolve", "yellow")]


def test_a_later_breach_opens_a_new_alert_with_a_new_fingerprint():
    rules = {"rules": [{"id": "stage", "kind": "threshold", "above": {"red": 3.0}}]}
    ev = evaluator(rules, [station()])
    seen = []
    for i, v in enumerate([3.5, 1.0, 3.5]):
        for ch in ev.on_reading(Reading("S1", "water_level", T0 + i * 15 * M, v)):
            seen.append((ch.event, ch.alert["fingerprint"]))
    assert [e for e, _ in seen] == ["open", "resolve", "open"]
    assert seen[0][1] == seen[1][1] != seen[2][1]
    assert seen[0][1] == fingerprint("stage", "S1", T0)


def test_match_by_station_and_zone():
    rules = {"rules": [
        {"id": "only-b", "kind": "threshold", "match": {"stations": ["B"]}, "above": {"red": 1}},
        {"id": "zone-z", "kind": "threshold", "match": {"zone": "Z"}, "above": {"red": 1}}]}
    ev = evaluator(rules, [station("A", zone="Z"), station("B")])
    a = ev.on_reading(Reading("A", "water_level", T0, 5))
    b = ev.on_reading(Reading("B", "water_level", T0, 5))
    assert [c.rule.id for c in a] == ["zone-z"]
    assert [c.rule.id for c in b] == ["only-b"]


def test_duplicate_and_late_readings_are_ignored():
    rules = {"rules": [{"id": "rain", "kind": "accumulation", "window": "1h", "above": {"red": 10}}]}
    ev = evaluator(rules, [station("R", kind="rainfall")])
    assert ev.on_reading(Reading("R", "rainfall", T0, 6)) == []
    assert ev.on_reading(Reading("R", "rainfall", T0, 6)) == []  # the same instant again: not counted twice
    assert ev.on_reading(Reading("R", "rainfall", T0 - M, 6)) == []  # late: the state has moved past it
    assert ev.late == 1
    opened = ev.on_reading(Reading("R", "rainfall", T0 + 15 * M, 5))
    assert opened and opened[0].alert["value"] == 11


def test_rate_of_rise_uses_the_value_at_the_start_of_the_window():
    rules = {"rules": [{"id": "rise", "kind": "rate_of_rise", "window": "1h", "above": {"orange": 0.3, "red": 0.6},
                        "for": "15m"}]}
    ev = evaluator(rules, [station()])
    values = [1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.0, 2.0, 2.0]
    assert feed(ev, "S1", "water_level", values) == [
        (105, "open", "orange"), (120, "raise", "red"), (165, "lower", "orange"), (180, "resolve", "orange")]


def test_rate_of_rise_needs_a_whole_window():
    rules = {"rules": [{"id": "rise", "kind": "rate_of_rise", "window": "1h", "above": {"red": 0.1}}]}
    ev = evaluator(rules, [station()])
    # +1 m in 45 minutes: no reading an hour back yet, so no rate is claimed
    assert feed(ev, "S1", "water_level", [0.0, 0.5, 0.8, 1.0]) == []
    assert feed(ev, "S1", "water_level", [1.5], start=T0 + 60 * M) == [(0, "open", "red")]


def test_accumulation_sums_depths_inside_the_window():
    rules = {"rules": [{"id": "rain", "kind": "accumulation", "window": "1h", "above": {"yellow": 20, "red": 40}}]}
    ev = evaluator(rules, [station("R", kind="rainfall")])
    values = [0, 5, 5, 5.08, 5, 10, 15, 15, 0, 0, 0]
    assert feed(ev, "R", "rainfall", values) == [
        (60, "open", "yellow"), (105, "raise", "red"), (135, "lower", "yellow"), (150, "resolve", "yellow")]


def test_stale_opens_on_the_clock_without_any_reading_and_resolves_on_data():
    rules = {"rules": [{"id": "silent", "kind": "stale", "match": {"kind": "water_level"}, "after": "1h",
                        "level": "yellow"}]}
    ev = evaluator(rules, [station("A"), station("NEVER"), station("R", kind="rainfall")])
    events = []
    ev.on_reading(Reading("A", "water_level", T0, 1.0))
    for m in range(0, 121, 5):
        for ch in ev.on_tick(T0 + m * M):
            events.append((m, ch.event, ch.alert["subject"]))
    # A's last reading at 0 and NEVER (counted from the clock start) both fall silent at 60 min
    assert sorted(events) == [(60, "open", "A"), (60, "open", "NEVER")]
    back = ev.on_reading(Reading("A", "water_level", T0 + 125 * M, 1.0))
    assert [(c.event, c.alert["subject"], c.alert["value"]) for c in back] == [("resolve", "A", 120.0)]


def test_stale_without_match_kind_watches_the_station_own_kind_only():
    """Regression: a `stale` rule without `match.kind` measured silence on the station's own kind but
    resolved on a reading of any kind, so a water-level gauge that still sent discharge flipped open /
    resolved tick after tick, a new fingerprint each time. As docs/rules.md says, it watches the
    station's own kind for both: another kind neither keeps the station fresh nor resolves the alert."""
    rules = {"rules": [{"id": "silent", "kind": "stale", "after": "1h", "level": "yellow"}]}
    ev = evaluator(rules, [station("A")])  # a water_level station
    ev.on_reading(Reading("A", "water_level", T0, 1.0))
    events = []
    for m in range(5, 181, 5):  # only discharge from here on, and a clock tick after each reading
        for ch in ev.on_reading(Reading("A", "discharge", T0 + m * M, 12.0)) + ev.on_tick(T0 + m * M):
            events.append((m, ch.event, ch.alert["fingerprint"]))
    assert [(m, e) for m, e, _ in events] == [(60, "open")]  # silent on water_level since 0: one alert
    (alert,) = ev.open_alerts()
    assert alert["fingerprint"] == events[0][2] and alert["value"] == 180.0
    back = ev.on_reading(Reading("A", "water_level", T0 + 185 * M, 1.1))  # its own kind again: resolved
    assert [(c.event, c.alert["fingerprint"]) for c in back] == [("resolve", events[0][2])]
    assert ev.on_tick(T0 + 190 * M) == []  # and fresh again


def test_zone_incident_only_in_matching_zone_and_category():
    rules = {"levels": ["yellow", "orange", "red"], "rules": [
        {"id": "zi", "kind": "zone_incident", "zones": {"risk": "high"}, "categories": ["trapped_people"],
         "level": "red"}]}
    poly = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    zones = {"H": Zone(id="H", risk="high", geometry=poly), "L": Zone(id="L", risk="low", geometry=poly)}
    ev = evaluator(rules, [], zones)

    def inc(iid, cat, zone, status="open", t=T0):
        return Incident(id=iid, time=t, category=cat, lat=0.5, lon=0.5, zone=zone, status=status)

    assert [c.event for c in ev.on_incident(inc("1", "trapped_people", "H"))] == ["open"]
    assert ev.on_incident(inc("1", "trapped_people", "H")) == []  # already open: one alert per subject
    assert ev.on_incident(inc("2", "trapped_people", "L")) == []
    assert ev.on_incident(inc("3", "road_closed", "H")) == []
    assert ev.on_incident(inc("4", "trapped_people", None)) == []
    closed = ev.on_incident(inc("1", "trapped_people", "H", status="closed", t=T0 + 60 * M))
    assert [(c.event, c.alert["resolved_at"]) for c in closed] == [("resolve", T0 + 60 * M)]


def test_trend_and_projected_time_to_the_next_level():
    rules = {"rules": [{"id": "stage", "kind": "threshold", "above": "thresholds"}]}
    ev = evaluator(rules, [station(yellow=2.0, orange=3.0, red=4.0)])
    # rising 0.1 m per 15 min = 0.4 m/h; at 2.4 m the orange bound (3.0) is 0.6 m away: 1 h 30 min
    for i, v in enumerate([2.0, 2.1, 2.2, 2.3, 2.4]):
        ev.on_reading(Reading("S1", "water_level", T0 + i * 15 * M, v))
    (alert,) = ev.open_alerts()
    assert alert["trend_per_h"] == pytest.approx(0.4)
    assert alert["next_level"] == "orange"
    assert alert["next_level_eta"] == T0 + 60 * M + 90 * M
    assert describe_eta(alert) == "orange in about 1 h 30 min"


def test_outlook_words_come_from_the_translation_table():
    alert = {"next_level": "red", "next_level_eta": T0 + 130 * M, "updated_at": T0}
    assert describe_eta(alert) == "red in about 2 h 10 min"
    assert describe_eta({**alert, "next_level_eta": T0}) == "red pending"
    assert describe_eta({**alert, "next_level": "amber"}) == "amber in about 2 h 10 min"  # a level of the rules' own
    assert describe_eta(alert, "zh") == i18n.t("rules.outlook.eta", "zh", level="红色", duration="2 h 10 min")
    assert describe_eta({**alert, "next_level_eta": None}) is None


def test_state_round_trip_resumes_identically():
    """Exported state loaded into a fresh evaluator continues exactly like the original."""
    values = [1.5, 1.8, 2.1, 2.2, 2.3, 2.6, 2.7, 2.8, 2.95, 2.4, 2.35, 1.95, 1.85]
    ref = evaluator(THRESHOLD, [station(yellow=2.0, orange=2.5, red=3.0)])
    expected = feed(ref, "S1", "water_level", values)

    first = evaluator(THRESHOLD, [station(yellow=2.0, orange=2.5, red=3.0)])
    got = feed(first, "S1", "water_level", values[:6])
    saved = {k: orjson.loads(orjson.dumps(v)) for k, v in first.export_dirty().items()}
    second = evaluator(THRESHOLD, [station(yellow=2.0, orange=2.5, red=3.0)])
    second.load(saved, first.export_clock())
    got += [(m + 6 * 15, e, lv) for m, e, lv in feed(second, "S1", "water_level", values[6:], start=T0 + 6 * 15 * M)]
    assert got == expected


# ---- rule state: bounded, compact, and readable across an upgrade ---------------------------------
UPGRADE_RULES = {"levels": ["yellow", "orange", "red"], "rules": [
    {"id": "stage", "kind": "threshold", "match": {"kind": "water_level"}, "above": "thresholds", "for": "30m",
     "clear_margin": 0.1},
    {"id": "rise", "kind": "rate_of_rise", "match": {"kind": "water_level"}, "window": "1h",
     "above": {"orange": 0.3, "red": 0.6}, "for": "15m"},
    {"id": "rain", "kind": "accumulation", "match": {"kind": "rainfall"}, "window": "1h", "above": {"yellow": 20, "red": 40}},
    {"id": "gust", "kind": "threshold", "match": {"kind": "wind_speed"}, "above": {"yellow": 15, "red": 25}}]}
UPGRADE_SERIES = {  # station -> (kind, a reading every 15 minutes)
    "S1": ("water_level", [1.5, 1.8, 2.1, 2.2, 2.3, 2.6, 2.7, 2.8, 2.95, 2.4, 2.35, 1.95, 1.85]),
    "R": ("rainfall", [0, 5, 5, 5.08, 5, 10, 15, 15, 0, 0, 0, 0, 0]),
    "W": ("wind_speed", [10, 12, 14, 16, 17, 19, 21, 23, 26, 22, 18, 12, 9]),
}
# Rule state as the engine stored it before STATE_VERSION 2 (format 1: one JSON object per subject,
# one-letter keys), after 7 readings of each gauge at 15-minute steps; every rule has an alert open.
# The threshold rules kept their readings in their own `v`; W (a threshold rule only) kept no `w`.
FORMAT_1_STATE = {
    'S1': (
        '{"l":{"water_level":1780005400000},"w":{"water_level":[[1780001800000,2.1],[1780002700000,'
        '2.2],[1780003600000,2.3],[1780004500000,2.6],[1780005400000,2.7]]},'
        '"r":{"stage":{"s":{"yellow":1780001800000,"orange":1780004500000},"h":["yellow"],'
        '"a":{"fingerprint":"713973ed57686174","rule":"stage","rule_kind":"threshold","subject":"S1",'
        '"subject_type":"station","status":"open","level":"yellow","peak_level":"yellow","value":2.7,'
        '"peak_value":2.7,"unit":"m","first_breach_at":1780001800000,"opened_at":1780003600000,'
        '"updated_at":1780005400000,"resolved_at":null,"lon":114.0,"lat":30.0,"zone":null,'
        '"trend_per_h":0.6,"next_level":"orange","next_level_eta":1780005400000,"message":""},'
        '"v":[[1780001800000,2.1],[1780002700000,2.2],[1780003600000,2.3],[1780004500000,2.6],'
        '[1780005400000,2.7]]},"rise":{"s":{"orange":1780003600000,"red":1780003600000},'
        '"h":["orange","red"],"a":{"fingerprint":"81c7a5e0263037a7","rule":"rise",'
        '"rule_kind":"rate_of_rise","subject":"S1","subject_type":"station","status":"open",'
        '"level":"red","peak_level":"red","value":0.6000000000000001,"peak_value":0.8,"unit":"m/h",'
        '"first_breach_at":1780003600000,"opened_at":1780004500000,"updated_at":1780005400000,'
        '"resolved_at":null,"lon":114.0,"lat":30.0,"zone":null,"trend_per_h":-0.4,"next_level":null,'
        '"next_level_eta":null,"message":""},"v":[[1780003600000,0.7999999999999998],[1780004500000,'
        '0.8],[1780005400000,0.6000000000000001]]}}}'
    ),
    'R': (
        '{"l":{"rainfall":1780005400000},"w":{"rainfall":[[1780001800000,5],[1780002700000,5.08],'
        '[1780003600000,5],[1780004500000,10],[1780005400000,15]]},'
        '"r":{"rain":{"s":{"yellow":1780003600000},"h":["yellow"],'
        '"a":{"fingerprint":"453a5d4ef3d85538","rule":"rain","rule_kind":"accumulation",'
        '"subject":"R","subject_type":"station","status":"open","level":"yellow",'
        '"peak_level":"yellow","value":35.08,"peak_value":35.08,"unit":"mm",'
        '"first_breach_at":1780003600000,"opened_at":1780003600000,"updated_at":1780005400000,'
        '"resolved_at":null,"lon":114.0,"lat":30.0,"zone":null,"trend_per_h":25.08,'
        '"next_level":"red","next_level_eta":1780006106220,"message":""},"v":[[1780001800000,10],'
        '[1780002700000,15.08],[1780003600000,20.08],[1780004500000,25.08],[1780005400000,35.08]]}}}'
    ),
    'W': (
        '{"l":{"wind_speed":1780005400000},"w":{"wind_speed":[]},'
        '"r":{"gust":{"s":{"yellow":1780002700000},"h":["yellow"],'
        '"a":{"fingerprint":"299ea90698de88c8","rule":"gust","rule_kind":"threshold","subject":"W",'
        '"subject_type":"station","status":"open","level":"yellow","peak_level":"yellow","value":21,'
        '"peak_value":21,"unit":"m/s","first_breach_at":1780002700000,"opened_at":1780002700000,'
        '"updated_at":1780005400000,"resolved_at":null,"lon":114.0,"lat":30.0,"zone":null,'
        '"trend_per_h":7.0,"next_level":"red","next_level_eta":1780007457142,"message":""},'
        '"v":[[1780001800000,14],[1780002700000,16],[1780003600000,17],[1780004500000,19],'
        '[1780005400000,21]]}}}'
    ),
}
FORMAT_1_CLOCK = {'clock_start': 1780000000000, 'now': 1780005400000, 'late': 0}


def upgrade_evaluator():
    return evaluator(UPGRADE_RULES, [station("S1", yellow=2.0, orange=2.5, red=3.0),
                                     Station(id="R", kind="rainfall", lon=114.0, lat=30.0, unit="mm"),
                                     Station(id="W", kind="wind_speed", lon=114.0, lat=30.0, unit="m/s")])


def feed_upgrade(ev, steps):
    out = []
    for i in steps:
        for sid, (kind, values) in UPGRADE_SERIES.items():
            for ch in ev.on_reading(Reading(sid, kind, T0 + i * 15 * M, values[i])):
                out.append((i, ch.event, ch.rule.id, ch.alert))
    return out


def test_state_in_the_previous_format_is_migrated_and_resumes():
    """A running system's stored state survives the upgrade: loaded from format 1, the engine goes on
    exactly as one that never stopped, and writes the subjects back in the current format."""
    ref = upgrade_evaluator()
    expected = [c for c in feed_upgrade(ref, range(13)) if c[0] >= 7]

    resumed = upgrade_evaluator()
    resumed.load({sid: orjson.loads(raw) for sid, raw in FORMAT_1_STATE.items()}, FORMAT_1_CLOCK)
    assert resumed.dirty == {"S1", "R", "W"}  # migrated: written back at the next commit
    assert len(resumed.open_alerts()) == 4
    got = feed_upgrade(resumed, range(7, 13))
    assert [(i, e, rid) for i, e, rid, _ in got] == [
        (7, "raise", "stage"), (7, "lower", "rise"), (7, "raise", "rain"), (8, "raise", "gust"),
        (9, "resolve", "rise"), (9, "lower", "rain"), (9, "lower", "gust"), (10, "lower", "stage"),
        (10, "resolve", "rain"), (11, "resolve", "gust"), (12, "resolve", "stage")]
    assert got == expected  # every field, trends and projected times included
    # the threshold rules' readings moved into the station's history, where the trend is taken from
    assert resumed.state["W"].rules["gust"].vh == []
    assert {k: s.to_json() for k, s in resumed.state.items()} == {k: s.to_json() for k, s in ref.state.items()}
    stored = resumed.export_dirty()
    assert {d[0] for d in stored.values()} == {STATE_VERSION}
    again = upgrade_evaluator()  # and the current format loads as it is
    again.load({k: orjson.loads(orjson.dumps(v)) for k, v in stored.items()}, resumed.export_clock())
    assert again.dirty == set()
    assert {k: s.to_json() for k, s in again.state.items()} == {k: s.to_json() for k, s in ref.state.items()}


def test_state_stays_bounded_when_a_station_reports_fast():
    """Ten readings a second for two hours: the windows keep one point a minute, and the values follow."""
    rules = {"rules": [
        {"id": "stage", "kind": "threshold", "match": {"kind": "water_level"}, "above": {"yellow": 0.0}},
        {"id": "rise", "kind": "rate_of_rise", "match": {"kind": "water_level"}, "window": "1h",
         "above": {"yellow": 0.0}},
        {"id": "rain", "kind": "accumulation", "match": {"kind": "rainfall"}, "window": "1h",
         "above": {"yellow": 0.0}}]}
    ev = evaluator(rules, [station("S1"), station("R", kind="rainfall")])
    step = 100  # ms
    for i in range(2 * 36_000):
        t = T0 + i * step
        ev.on_reading(Reading("S1", "water_level", t, 1.0 + 0.6 * i * step / HOUR_MS))  # rising 0.6 m/h
        ev.on_reading(Reading("R", "rainfall", t, 0.001))  # 0.001 mm each: 36 mm an hour
    s1, r = ev.state["S1"], ev.state["R"]
    assert len(s1.hist["water_level"]) <= 62 and len(r.hist["rainfall"]) <= 62
    assert len(s1.rules["rise"].vh) <= 62 and len(r.rules["rain"].vh) <= 62
    assert s1.rules["stage"].vh == []  # a threshold rule's trend comes from the readings in `hist`
    assert len(orjson.dumps(s1.to_json())) < 6000 and len(orjson.dumps(r.to_json())) < 6000
    alerts = {a["rule"]: a for a in ev.open_alerts()}
    # the window's start is the newest reading kept at or before t - 1 h: at most a minute early
    assert 0.6 - 1e-9 <= alerts["rise"]["value"] <= 0.6 * 61 / 60 + 1e-9
    assert alerts["stage"]["trend_per_h"] == pytest.approx(0.6, rel=1e-6)
    # no depth is dropped: (t - 1 h, t] holds 36,000 readings, 36 mm; a minute's worth (0.6 mm) may count longer
    assert 36.0 - 1e-6 <= alerts["rain"]["value"] <= 36.6 + 1e-6


def test_accumulation_running_sum_is_exactly_a_fresh_sum():
    """The running sum gives, to the last bit, the sum of the depths in (t - window, t] added afresh."""
    rules = {"rules": [
        {"id": "rain", "kind": "accumulation", "window": "1h", "above": {"yellow": 0.0}},
        {"id": "rain3h", "kind": "accumulation", "window": "3h", "above": {"yellow": 0.0}}]}
    ev = evaluator(rules, [station("R", kind="rainfall")])
    rnd = random.Random(5)
    t, seen = T0, []
    for _ in range(2000):
        t += rnd.choice([M, M, 2 * M, 7 * M, 15 * M, 15 * M, 61 * M, 5 * HOUR_MS]) + rnd.randrange(1000)
        v = rnd.choice([0, 0.2, 1.5, 5.08, 7.3, round(rnd.uniform(0, 20), 2)])
        seen.append((t, v))
        ev.on_reading(Reading("R", "rainfall", t, v))
        got = {a["rule"]: a["value"] for a in ev.open_alerts()}
        for rid, window in (("rain", HOUR_MS), ("rain3h", 3 * HOUR_MS)):
            assert got[rid] == sum(x for tt, x in seen[-200:] if tt > t - window)


def test_fast_state_round_trip_resumes_identically():
    """Exported and loaded again every 333 readings (minutes merged, running sums summed afresh), the
    evaluator gives exactly the alert changes of one that never stopped."""
    rules = {"rules": [
        {"id": "stage", "kind": "threshold", "match": {"kind": "water_level"}, "above": "thresholds", "for": "2m",
         "clear_margin": 0.05},
        {"id": "rise", "kind": "rate_of_rise", "match": {"kind": "water_level"}, "window": "20m",
         "above": {"orange": 0.5, "red": 1.0}},
        {"id": "rain", "kind": "accumulation", "match": {"kind": "rainfall"}, "window": "10m",
         "above": {"yellow": 5, "red": 10}}]}
    stations = [station("S1", yellow=2.0, orange=2.5, red=3.0), station("R", kind="rainfall")]
    rnd = random.Random(11)
    data, t, level = [], T0, 2.0
    for _ in range(6000):
        t += rnd.choice([200, 1000, 7000, 30_000, 65_000])
        level = max(1.0, level + rnd.gauss(0.0, 0.03))
        data.append(("S1", "water_level", t, round(level, 3)))
        data.append(("R", "rainfall", t, rnd.choice([0, 0, 0.05, 0.1, 0.4])))

    def run(every):
        ev = evaluator(rules, stations)
        out = []
        for i, (sid, kind, tt, v) in enumerate(data):
            if every and i % every == 0:
                saved = {k: orjson.loads(orjson.dumps(s.to_json())) for k, s in ev.state.items()}
                clock = ev.export_clock()
                ev = evaluator(rules, stations)
                ev.load(saved, clock)
            out += [(ch.event, ch.alert) for ch in ev.on_reading(Reading(sid, kind, tt, v))]
        return out

    straight = run(0)
    assert len(straight) > 50
    assert run(333) == straight
