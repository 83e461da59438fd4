"""The rule vocabulary, evaluated without any server: pure inputs in, alert transitions out."""

from __future__ import annotations

import pytest

from command.models import Incident, Reading, Station, Zone
from command.rules import (
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


def test_state_round_trip_resumes_identically():
    """Exported state loaded into a fresh evaluator continues exactly like the original."""
    values = [1.5, 1.8, 2.1, 2.2, 2.3, 2.6, 2.7, 2.8, 2.95, 2.4, 2.35, 1.95, 1.85]
    ref = evaluator(THRESHOLD, [station(yellow=2.0, orange=2.5, red=3.0)])
    expected = feed(ref, "S1", "water_level", values)

    first = evaluator(THRESHOLD, [station(yellow=2.0, orange=2.5, red=3.0)])
    got = feed(first, "S1", "water_level", values[:6])
    import orjson

    saved = {k: orjson.loads(orjson.dumps(v)) for k, v in first.export_dirty().items()}
    second = evaluator(THRESHOLD, [station(yellow=2.0, orange=2.5, red=3.0)])
    second.load(saved, first.export_clock())
    got += [(m + 6 * 15, e, lv) for m, e, lv in feed(second, "S1", "water_level", values[6:], start=T0 + 6 * 15 * M)]
    assert got == expected
