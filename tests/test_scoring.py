"""Forecast verification of alert rules (command/scoring), on hand-worked cases.

Times are written in minutes after a start (`m(90)` is 01:30); every period is half-open [start, end).
"""

from __future__ import annotations

import pytest

from command.scoring import (
    TruthError,
    alert_segments,
    derive_truth,
    merge,
    parse_truth,
    score_rule_set,
    score_station_level,
    summarize,
    warning_periods,
)
from command.timeutil import parse_time

LEVELS = ["yellow", "orange", "red"]
T0 = parse_time("2026-07-14T00:00:00+08:00")
HOUR = 60


def m(minutes: float) -> int:
    return T0 + int(minutes * 60_000)


def periods(*pairs: tuple[float, float]) -> list[tuple[int, int]]:
    return [(m(a), m(b)) for a, b in pairs]


LEAD = 60 * 60_000  # a lead window of 1 h


# ---- periods ---------------------------------------------------------------------------------------
def test_merge_joins_overlapping_and_touching_periods_and_drops_empty_ones():
    assert merge(periods((50, 60), (0, 10), (10, 20), (15, 30), (40, 40))) == periods((0, 30), (50, 60))


# ---- scoring one station at one level ----------------------------------------------------------------
def test_a_late_warning_is_a_hit_with_a_negative_lead_time():
    # the event starts at 01:40; the alert opens only at 02:10 (a `for` wait) and outlasts the event
    sc = score_station_level(periods((100, 200)), periods((130, 250)), LEAD)
    assert (sc.hits, sc.misses, sc.false_alarms) == (1, 0, 0)
    f = summarize(sc)
    assert f["lead_median_min"] == f["lead_min_min"] == f["lead_max_min"] == -30.0
    assert (f["pod"], f["far"], f["csi"]) == (1.0, 0.0, 1.0)


def test_a_warning_spanning_two_events_makes_two_hits_and_no_false_alarm():
    # one warning from 00:40 to 05:00 over two events (01:40-02:30 and 03:20-04:20)
    sc = score_station_level(periods((100, 150), (200, 260)), periods((40, 300)), LEAD)
    assert (sc.hits, sc.misses, sc.false_alarms) == (2, 0, 0)
    assert sorted(x / 60_000 for x in sc.leads_ms) == [60, 160]  # each lead from the same warning's start
    f = summarize(sc)
    assert (f["lead_min_min"], f["lead_median_min"], f["lead_max_min"]) == (60.0, 110.0, 160.0)


def test_a_warning_that_overlaps_no_event_is_a_false_alarm():
    # event 01:40-03:20, lead window 1 h: the window opens at 00:40.
    # 00:00-00:20 ends before the window: a false alarm. 00:50-02:00 overlaps it: a hit, lead 50 min.
    sc = score_station_level(periods((100, 200)), periods((0, 20), (50, 120)), LEAD)
    assert (sc.hits, sc.misses, sc.false_alarms) == (1, 0, 1)
    assert [w.false_alarm for w in sc.warnings] == [True, False]
    f = summarize(sc)
    assert (f["pod"], f["far"], f["csi"], f["lead_median_min"]) == (1.0, 0.5, 0.5, 50.0)


def test_touching_is_not_overlapping():
    # a warning that ends as the lead window opens, and one that begins as the event ends
    sc = score_station_level(periods((100, 200)), periods((0, 40), (200, 230)), LEAD)
    assert (sc.hits, sc.misses, sc.false_alarms) == (0, 1, 2)
    # one minute more and the first one counts, with a lead of 100 min
    sc = score_station_level(periods((100, 200)), periods((0, 41)), LEAD)
    assert (sc.hits, sc.false_alarms, sc.leads_ms) == (1, 0, [100 * 60_000])


def test_the_lead_window_decides_how_early_is_still_a_warning():
    early = periods((0, 30))  # a warning that ended 70 min before the event
    assert score_station_level(periods((100, 200)), early, LEAD).false_alarms == 1
    sc = score_station_level(periods((100, 200)), early, 2 * LEAD)
    assert (sc.hits, sc.false_alarms, sc.leads_ms) == (1, 0, [100 * 60_000])


def test_an_event_without_a_warning_is_a_miss():
    sc = score_station_level(periods((100, 200), (300, 320)), periods((290, 330)), LEAD)
    assert (sc.hits, sc.misses, sc.false_alarms) == (1, 1, 0)
    assert [e.hit for e in sc.events] == [False, True]
    assert summarize(sc)["pod"] == 0.5


def test_no_events_at_all_gives_null_ratios():
    f = summarize(score_station_level([], [], LEAD))
    assert f == {"hits": 0, "misses": 0, "false_alarms": 0, "pod": None, "far": None, "csi": None,
                 "lead_median_min": None, "lead_min_min": None, "lead_max_min": None}
    # a warning with no event to catch: POD has nothing to divide, FAR is 1, CSI 0
    f = summarize(score_station_level([], periods((10, 20)), LEAD))
    assert (f["false_alarms"], f["pod"], f["far"], f["csi"], f["lead_median_min"]) == (1, None, 1.0, 0.0, None)


def test_a_rule_set_sums_its_stations_and_leaves_unscored_stations_out():
    truth = {"A": {"yellow": periods((100, 200)), "orange": [], "red": []},
             "B": {"yellow": periods((100, 200)), "orange": [], "red": []}}
    warnings = {"A": {"yellow": periods((40, 150)), "orange": [], "red": []},
                "B": {"yellow": periods((130, 140), (500, 510)), "orange": [], "red": []},
                "C": {"yellow": periods((0, 999)), "orange": [], "red": []}}  # not in the truth: not scored
    sc = score_rule_set(truth, warnings, LEVELS, LEAD)
    assert set(sc.stations) == {"A", "B"}
    y = sc.levels["yellow"]
    assert (y["hits"], y["misses"], y["false_alarms"]) == (2, 0, 1)
    assert (y["lead_min_min"], y["lead_median_min"], y["lead_max_min"]) == (-30.0, 15.0, 60.0)
    assert (y["pod"], y["far"], y["csi"]) == (1.0, 0.3333, 0.6667)
    assert sc.levels["red"]["pod"] is None
    assert sc.stations["A"]["yellow"]["lead_median_min"] == 60.0


# ---- warning periods from the alert stream ------------------------------------------------------------
def alert(fp, subject, level, t, *, subject_type="station", zone=None, resolved=None, event="open"):
    """An alert snapshot as the engine streams it (only the fields the scoring reads)."""
    return (event, {"fingerprint": fp, "subject": subject, "subject_type": subject_type, "zone": zone,
                    "level": level, "opened_at": m(0) if event != "open" else m(t), "updated_at": m(t),
                    "resolved_at": m(resolved) if resolved is not None else None})


def test_an_alert_level_over_time_from_its_events():
    events = [
        alert("a", "A", "yellow", 10), alert("a", "A", "orange", 20, event="raise"),
        alert("a", "A", "yellow", 30, event="lower"), alert("a", "A", "yellow", 40, resolved=40, event="resolve"),
        alert("b", "A", "red", 50),  # still open at the end
    ]
    segs = alert_segments(events, LEVELS, horizon=m(100))
    assert segs["a"][1] == [(m(10), m(20), 0), (m(20), m(30), 1), (m(30), m(40), 0)]
    assert segs["b"][1] == [(m(50), m(100), 2)]


def test_a_zone_rule_covers_every_station_of_its_zone_and_a_station_alert_only_its_station():
    stations = {"A": "Z1", "B": "Z1", "C": "Z2", "D": None}
    events = [
        # a river-stage alert on A: yellow 00:10, orange 00:20, yellow 00:30, resolved 00:40
        alert("a", "A", "yellow", 10, zone="Z1"), alert("a", "A", "orange", 20, zone="Z1", event="raise"),
        alert("a", "A", "yellow", 30, zone="Z1", event="lower"),
        alert("a", "A", "yellow", 40, zone="Z1", resolved=40, event="resolve"),
        # an incident in Z1 (zone_incident): red from 00:35 until the end
        alert("i", "INC-1", "red", 35, subject_type="incident", zone="Z1"),
        # another agency's warning over Z2 (zone_warning: the zone is the subject), orange 01:00-01:30
        alert("z", "Z2", "orange", 60, subject_type="zone"),
        alert("z", "Z2", "orange", 90, subject_type="zone", resolved=90, event="resolve"),
    ]
    w = warning_periods(events, stations, LEVELS, horizon=m(120))
    # A: its own alert joined with the incident's (they overlap from 00:35): one warning at yellow
    assert w["A"]["yellow"] == periods((10, 120))
    assert w["A"]["orange"] == periods((20, 30), (35, 120))
    assert w["A"]["red"] == periods((35, 120))
    # B shares A's zone: the incident covers it, A's own alert does not
    assert w["B"] == {"yellow": periods((35, 120)), "orange": periods((35, 120)), "red": periods((35, 120))}
    assert w["C"] == {"yellow": periods((60, 90)), "orange": periods((60, 90)), "red": []}
    assert w["D"] == {"yellow": [], "orange": [], "red": []}
    # scored against B's truth: yellow 01:00-01:40, so the incident warned it 25 min ahead
    sc = score_rule_set({"B": {"yellow": periods((60, 100)), "orange": [], "red": []}}, w, LEVELS, LEAD)
    assert sc.stations["B"]["yellow"]["lead_median_min"] == 25.0
    assert sc.stations["B"]["red"]["false_alarms"] == 1


# ---- truth derived from thresholds ---------------------------------------------------------------------
def test_truth_from_thresholds_runs_from_the_first_reading_at_or_above_to_the_first_below():
    t = [m(x) for x in (0, 15, 30, 45, 60, 75, 90)]
    v = [1.8, 2.0, 2.6, 3.1, 2.4, 1.9, 2.2]  # 2.0 is exactly yellow: reached
    truth = derive_truth({"A": (t, v)}, {"A": {"yellow": 2.0, "orange": 2.5, "red": 3.0}}, LEVELS, horizon=m(120))
    assert truth["A"]["yellow"] == periods((15, 75), (90, 120))  # still yellow at the last reading: until the end
    assert truth["A"]["orange"] == periods((30, 60))
    assert truth["A"]["red"] == periods((45, 60))


def test_truth_from_thresholds_counts_a_higher_level_as_the_lower_ones_and_skips_gauges_without():
    t = [m(x) for x in (0, 15, 30)]
    truth = derive_truth({"A": (t, [1.0, 3.5, 1.0]), "R": (t, [50.0, 60.0, 70.0])},
                         {"A": {"yellow": 2.0, "red": 3.0}, "R": {}}, LEVELS, horizon=m(60))
    assert set(truth) == {"A"}  # R has no thresholds: nothing can be said about it
    assert truth["A"] == {"yellow": periods((15, 30)), "orange": periods((15, 30)), "red": periods((15, 30))}
    none = derive_truth({}, {"B": {"yellow": 1.0}}, LEVELS, horizon=m(60))  # no readings: no events
    assert none == {"B": {"yellow": [], "orange": [], "red": []}}


# ---- truth.csv ------------------------------------------------------------------------------------------
def test_truth_csv_is_the_whole_truth_and_a_level_counts_for_the_ones_below():
    text = ("subject,level,start,end\n"
            "A,yellow,2026-07-14T01:00:00+08:00,2026-07-14T05:00:00+08:00\n"
            "\n"
            "A,red,2026-07-14T02:00:00+08:00,2026-07-14T03:00:00+08:00\n"
            "B,orange,2026-07-13T18:30:00Z,\n")  # another offset; no end: still at orange at the end
    truth = parse_truth(text, "truth.csv", ["A", "B", "C"], LEVELS, horizon=m(600))
    assert truth["A"] == {"yellow": periods((60, 300)), "orange": periods((120, 180)), "red": periods((120, 180))}
    assert truth["B"] == {"yellow": periods((150, 600)), "orange": periods((150, 600)), "red": []}
    assert truth["C"] == {"yellow": [], "orange": [], "red": []}  # no row: no event


@pytest.mark.parametrize(("text", "where", "what"), [
    ("", "truth.csv:1", "empty file"),
    ("station,level,start,end\n", "truth.csv:1", "bad header"),
    ("subject,level,start,end\nA,yellow,2026-07-14T01:00:00+08:00\n", "truth.csv:2", "expected 4 columns"),
    ("subject,level,start,end\nA,yellow,2026-07-14T01:00:00+08:00,2026-07-14T02:00:00+08:00\n"
     "Q,yellow,2026-07-14T01:00:00+08:00,2026-07-14T02:00:00+08:00\n", "truth.csv:3", "unknown station 'Q'"),
    ("subject,level,start,end\nA,amber,2026-07-14T01:00:00+08:00,2026-07-14T02:00:00+08:00\n", "truth.csv:2",
     "level: must be one of yellow, orange, red, got 'amber'"),
    ("subject,level,start,end\nA,red,2026-07-14 01:00,2026-07-14T02:00:00+08:00\n", "truth.csv:2",
     "start: time '2026-07-14 01:00' has no UTC offset"),
    ("subject,level,start,end\nA,red,yesterday+08:00,2026-07-14T02:00:00+08:00\n", "truth.csv:2",
     "start: invalid time 'yesterday+08:00'"),
    ("subject,level,start,end\nA,red,2026-07-14T02:00:00+08:00,2026-07-14T01:00:00+08:00\n", "truth.csv:2",
     "is not after start"),
])
def test_a_malformed_truth_csv_names_the_file_and_line(text, where, what):
    with pytest.raises(TruthError) as exc:
        parse_truth(text, "truth.csv", ["A"], LEVELS, horizon=m(600))
    assert exc.value.message.startswith(where + ": ")
    assert what in exc.value.message
