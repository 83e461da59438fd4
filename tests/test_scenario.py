"""Scenario folders: unit conversion, duplicates, quarantine, and clear errors for malformed ones."""

from __future__ import annotations

import math
import shutil

import pytest

from command.scenarios.load import ScenarioError, load_scenario
from command.timeutil import parse_time
from command.units import UnitError, factor_for, to_si

from .conftest import SCENARIOS


def test_units_convert_to_si():
    assert to_si(10, "ft") == pytest.approx((3.048, "m"))
    assert to_si(1, "in") == pytest.approx((25.4, "mm"))
    assert to_si(100, "ft3/s") == pytest.approx((2.8316846592, "m3/s"))
    assert to_si(36, "km/h") == pytest.approx((10.0, "m/s"))
    with pytest.raises(UnitError, match="unknown unit 'furlong'"):
        to_si(1, "furlong")
    with pytest.raises(UnitError, match="does not measure water_level"):
        factor_for("mm", "water_level")


def test_threshold_scenario_loads_in_si_with_quarantine_and_duplicates():
    sc = load_scenario(SCENARIOS / "rule_threshold")
    # station thresholds in feet are converted on load
    assert sc.stations["WL-F"].thresholds == pytest.approx({"yellow": 1.8288, "orange": 2.4384, "red": 3.048})
    assert sc.stations["WL-A"].thresholds == {"yellow": 2.0, "orange": 2.5, "red": 3.0}
    # readings in feet are converted on ingest
    wlf = sc.readings[sc.readings.station_id == "WL-F"]
    assert wlf.value.iloc[0] == pytest.approx(5.0 * 0.3048)
    # sorted by time even though rows were out of order in the file
    assert list(sc.readings.t) == sorted(sc.readings.t)
    # 32 good rows (16 steps x 2 stations); two exact duplicates ignored, not quarantined
    assert len(sc.readings) == 32 and sc.duplicates == 2
    assert [(q["line"], q["reason"]) for q in sc.quarantine] == [
        (35, "empty value"), (36, "non-numeric value 'n/a'"), (37, "unknown station 'WL-Z'"),
        (38, "unknown unit 'furlong'")]
    assert sc.quarantine[0]["row"] == {"time": "2026-07-01T01:00:00+08:00", "station_id": "WL-A",
                                       "kind": "water_level", "value": "", "unit": "m"}
    assert sc.start == parse_time("2026-07-01T00:00:00+08:00") and sc.timezone == "Asia/Shanghai"


def test_inch_rainfall_is_converted():
    sc = load_scenario(SCENARIOS / "rule_accumulation")
    assert sc.readings.value.iloc[3] == pytest.approx(5.08)


def test_conflicting_duplicate_is_quarantined(tmp_path):
    folder = tmp_path / "s"
    shutil.copytree(SCENARIOS / "rule_rate_of_rise", folder)
    rules = (folder / "scenario.yaml").read_text().replace("../tiny_common", str(SCENARIOS / "tiny_common"))
    (folder / "scenario.yaml").write_text(rules)
    with (folder / "readings.csv").open("a") as fh:
        fh.write("2026-07-01T00:15:00+08:00,WL-A,water_level,9.99,m\n")
        fh.write("2026-07-01T00:15:00+08:00,WL-A,water_level,1.0,m\n")
        fh.write("2026-07-01 00:30,WL-A,water_level,1.0,m\n")
    sc = load_scenario(folder)
    reasons = [q["reason"] for q in sc.quarantine]
    assert reasons == ["conflicting duplicate: another value for the same station, kind and time",
                       "time '2026-07-01 00:30' has no UTC offset"]
    assert sc.duplicates == 1


def test_scenario_value_inf_nan_true_are_quarantined_with_the_feeds_reasons(tmp_path):
    # the same cleaner and reasons as every feed adapter (command.values.clean_number), not a rule of its own
    folder = tmp_path / "s"
    shutil.copytree(SCENARIOS / "rule_threshold", folder)
    doc = (folder / "scenario.yaml").read_text().replace("../tiny_common", str(SCENARIOS / "tiny_common"))
    (folder / "scenario.yaml").write_text(doc)
    rows = ["inf", "nan", "true", "-Infinity", "1e400", "1_000", "TRUE", " 2.5e0 "]
    with (folder / "readings.csv").open("a") as fh:
        for i, raw in enumerate(rows):
            fh.write(f"2026-07-01T05:{i:02d}:00+08:00,WL-A,water_level,{raw},m\n")
    before = load_scenario(SCENARIOS / "rule_threshold")
    sc = load_scenario(folder)
    assert [(q["row"]["value"], q["reason"]) for q in sc.quarantine[len(before.quarantine):]] == [
        ("inf", "non-finite value 'inf'"), ("nan", "non-finite value 'nan'"), ("true", "non-numeric value 'true'"),
        ("-Infinity", "non-finite value '-Infinity'"), ("1e400", "non-finite value '1e400'"),
        ("1_000", "non-numeric value '1_000'"), ("TRUE", "non-numeric value 'TRUE'")]
    assert sc.quarantine[: len(before.quarantine)] == before.quarantine  # empty value, n/a ... as before
    assert len(sc.readings) == len(before.readings) + 1 and sc.readings.value.iloc[-1] == 2.5
    assert sc.readings.value.map(math.isfinite).all()


def test_incidents_get_their_zone_and_bad_rows_are_quarantined():
    sc = load_scenario(SCENARIOS / "rule_zone_incident")
    by_id = {(i.id, i.status): i for i in sc.incidents}
    assert by_id[("I1", "open")].zone == "Z-HIGH"
    assert by_id[("I2", "open")].zone == "Z-LOW"
    assert by_id[("I1", "closed")].status == "closed"
    assert [(q["source"], q["line"], q["reason"]) for q in sc.quarantine] == [
        ("incidents.csv", 5, "lat: a number from -90 to 90")]
    assert [(i.type, i.data["incident_id"]) for i in sc.injects] == [("incident", "INJ-1")]


# ---- malformed scenarios stop with the file (and line) named --------------------------------------
@pytest.fixture
def broken(tmp_path):
    """A copy of the threshold scenario, self-contained, to break in one place."""
    folder = tmp_path / "broken"
    shutil.copytree(SCENARIOS / "rule_threshold", folder)
    for name in ("stations.geojson", "zones.geojson", "resources.csv"):
        shutil.copy(SCENARIOS / "tiny_common" / name, folder / name)
    text = (folder / "scenario.yaml").read_text()
    text = "\n".join(line for line in text.splitlines() if "tiny_common" not in line) + "\n"
    (folder / "scenario.yaml").write_text(text)
    load_scenario(folder)  # intact, it loads
    return folder


def test_missing_file(broken):
    (broken / "readings.csv").unlink()
    with pytest.raises(ScenarioError, match=r"readings.csv: file not found"):
        load_scenario(broken)


def test_bad_header(broken):
    p = broken / "readings.csv"
    p.write_text(p.read_text().replace("time,station_id", "when,station_id", 1))
    with pytest.raises(ScenarioError, match=r"readings.csv:1: bad header .*missing column\(s\) time"):
        load_scenario(broken)


def test_bad_yaml_names_the_line(broken):
    p = broken / "rules.yaml"
    p.write_text("levels: [yellow, orange, red]\nrules:\n  - id: a\n    kind: [threshold\n")
    with pytest.raises(ScenarioError, match=r"rules.yaml:\d+: invalid YAML"):
        load_scenario(broken)


def test_bad_rule_is_named(broken):
    p = broken / "rules.yaml"
    p.write_text(p.read_text().replace("kind: threshold", "kind: thresold"))
    with pytest.raises(ScenarioError, match=r"rules.yaml: rule 'river-stage': unknown kind 'thresold'"):
        load_scenario(broken)


def test_invalid_geometry(broken):
    p = broken / "zones.geojson"
    bowtie = '[[[114.0,30.0],[114.1,30.1],[114.1,30.0],[114.0,30.1],[114.0,30.0]]]'
    import json

    doc = json.loads(p.read_text())
    doc["features"][0]["geometry"]["coordinates"] = json.loads(bowtie)
    p.write_text(json.dumps(doc))
    with pytest.raises(ScenarioError, match=r"zones.geojson: zone 'Z-HIGH' \(feature #1\): invalid geometry: Self-intersection"):
        load_scenario(broken)


def test_invalid_json_names_the_line(broken):
    p = broken / "stations.geojson"
    p.write_text(p.read_text().replace('"kind"', 'kind', 1))
    with pytest.raises(ScenarioError, match=r"stations.geojson:\d+: invalid JSON"):
        load_scenario(broken)


def test_bad_resource_row_names_the_line(broken):
    p = broken / "resources.csv"
    p.write_text(p.read_text() + "X1,police,police_unit,Unit X,not-a-lat,114.0,available,\n")
    with pytest.raises(ScenarioError, match=r"resources.csv:10: resource 'X1': lat"):
        load_scenario(broken)


def test_unknown_resource_status_is_refused(broken):
    p = broken / "resources.csv"
    p.write_text(p.read_text() + "X1,police,police_unit,Unit X,30.0,114.0,sleeping,\n")
    with pytest.raises(ScenarioError, match=r"resources.csv:10: resource 'X1': status"):
        load_scenario(broken)


def test_bad_inject(broken):
    p = broken / "scenario.yaml"
    p.write_text(p.read_text() + "injects:\n  - {at: 1h, type: meteor}\n")
    with pytest.raises(ScenarioError, match=r"scenario.yaml: inject #1: `type` must be one of"):
        load_scenario(broken)


def test_missing_start(broken):
    p = broken / "scenario.yaml"
    p.write_text("\n".join(line for line in p.read_text().splitlines() if not line.startswith("start")))
    with pytest.raises(ScenarioError, match=r"scenario.yaml: missing `start`"):
        load_scenario(broken)
