"""One value cleaner (`command.values.clean_number`) for every adapter: the same value is taken or
rejected, with the same reason, whichever service sent it. The payloads are the recorded ones
(tests/fixtures/) with one value changed."""

from __future__ import annotations

import json
import math

import pytest

from command.errors import InvalidInput
from command.values import clean_number
from feeds import ea, open_meteo, usgs
from feeds.ea import EASource

from .conftest import coordinator, deadletters, fixture_bytes, fixture_json, readings_in_stream, usgs_variant


# ---- the cleaner itself ---------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "value"), [
    (4, 4.0), (0.754, 0.754), (-3, -3.0), ("4.36", 4.36), (" -1e3 ", -1000.0), (".5", 0.5), ("5.", 5.0),
    ("+2", 2.0), ("00012", 12.0), (1e308, 1e308),
])
def test_clean_number_takes_numbers_and_numeric_strings(raw, value):
    assert clean_number(raw) == value and type(clean_number(raw)) is float


@pytest.mark.parametrize(("raw", "reason"), [
    (None, "missing value"), ("", "missing value"), ("   ", "missing value"),
    (True, "non-numeric value True"), (False, "non-numeric value False"),
    ("true", "non-numeric value 'true'"), ("n/a", "non-numeric value 'n/a'"), ("1_000", "non-numeric value '1_000'"),
    ("0x10", "non-numeric value '0x10'"), ("1,5", "non-numeric value '1,5'"), ("４２", "non-numeric value '４２'"),
    ([1.0], "non-numeric value [1.0]"), ({"v": 1}, "non-numeric value {'v': 1}"),
    (math.inf, "non-finite value inf"), (-math.inf, "non-finite value -inf"), (math.nan, "non-finite value nan"),
    ("inf", "non-finite value 'inf'"), ("-Infinity", "non-finite value '-Infinity'"), ("NaN", "non-finite value 'NaN'"),
    ("1e400", "non-finite value '1e400'"), (10**400, "non-finite value " + repr(10**400)),
])
def test_clean_number_rejects_with_a_short_reason(raw, reason):
    with pytest.raises(InvalidInput) as err:
        clean_number(raw)
    assert err.value.message == reason and err.value.errors == {"value": reason}


# ---- the same rule in every adapter ---------------------------------------------------------------
def _usgs_with(raw) -> bytes:
    doc = fixture_json("usgs_iv.json")
    doc["value"]["timeSeries"][1]["values"][0]["value"][0]["value"] = raw  # 01491000 gage height
    return json.dumps(doc).encode()


def _ea_readings_with(raw) -> bytes:
    doc = fixture_json("ea_readings.json")
    doc["items"][0]["value"] = raw  # 690140, 2015-12-10T16:00Z, 0.754 m
    return json.dumps(doc).encode()


def _ea_station_with(raw) -> bytes:
    doc = fixture_json("ea_station_1491TH.json")
    doc["items"]["measures"][1]["latestReading"]["value"] = raw  # the Stage measure, 2.098 m
    return json.dumps(doc).encode()


def _open_meteo_with(raw) -> bytes:
    doc = fixture_json("open_meteo.json")
    doc["hourly"]["precipitation"][14] = raw  # 14:00 local, 7.3 mm
    return json.dumps(doc).encode()


ADAPTERS = {
    "usgs": (lambda raw: usgs.parse(_usgs_with(raw)), 3),
    "ea readings": (lambda raw: ea.parse(_ea_readings_with(raw)), 7),
    "ea station": (lambda raw: ea.parse(_ea_station_with(raw)), 1),
    "open-meteo": (lambda raw: open_meteo.parse(_open_meteo_with(raw)), 47),
}


def _taken(res) -> list:
    return res.readings + res.forecasts


@pytest.mark.parametrize("adapter", ADAPTERS)
@pytest.mark.parametrize("raw", ["Infinity", "-inf", "1e400", "NaN"])
def test_infinity_rejected_by_every_adapter(adapter, raw):
    # JSON has no infinity or NaN literal: services send them as strings (orjson refuses 1e400 as a number)
    parse, kept = ADAPTERS[adapter]
    res = parse(raw)
    assert [r.reason for r in res.rejected if "value" in r.reason] == [f"non-finite value {raw!r}"]
    assert len(_taken(res)) == kept and all(math.isfinite(x.value) for x in _taken(res))


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_true_is_rejected_by_every_adapter_never_one(adapter):
    parse, kept = ADAPTERS[adapter]
    res = parse(True)
    assert [r.reason for r in res.rejected if "value" in r.reason] == ["non-numeric value True"]
    assert len(_taken(res)) == kept


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_numeric_string_is_taken_by_every_adapter(adapter):
    parse, kept = ADAPTERS[adapter]
    res = parse("2.5")
    assert not [r for r in res.rejected if "value" in r.reason]
    assert len(_taken(res)) == kept + 1 and 2.5 in {round(x.value / f, 9) for x in _taken(res) for f in (1, 0.3048)}


def test_ea_reading_true_is_rejected_not_one():
    # before the one cleaner, EA took JSON `true` as 1.0 m (float(True))
    res = ea.parse(_ea_readings_with(True))
    assert [(r.record["value"], r.reason) for r in res.rejected] == [(True, "non-numeric value True")]
    assert len(res.readings) == 7 and 1.0 not in {x.value for x in res.readings}
    assert res.readings[0].value == 0.765  # the next reading, untouched


def test_usgs_true_is_rejected_not_one():
    res = usgs.parse(_usgs_with(True))
    assert [r.reason for r in res.rejected] == ["non-numeric value True"]
    assert ("usgs:01491000", "water_level") not in {(x.station_id, x.kind) for x in res.readings}


def test_ea_no_data_value_still_says_no_data():
    assert [r.reason for r in ea.parse(_ea_readings_with(-999999)).rejected] == ["no-data value -999999"]
    assert [r.reason for r in ea.parse(_ea_readings_with("-999999")).rejected] == ["no-data value -999999.0"]


def test_usgs_unusable_no_data_value_does_not_stop_the_payload():
    doc = fixture_json("usgs_iv.json")
    doc["value"]["timeSeries"][1]["variable"]["noDataValue"] = "none"
    res = usgs.parse(json.dumps(doc).encode())
    assert len(res.readings) == 4 and res.rejected == []


def test_open_meteo_null_keeps_its_own_reason():
    res = open_meteo.parse(_open_meteo_with(None))
    assert [r.reason for r in res.rejected] == ["missing value (null)"]


# ---- over HTTP, into the dead letters ---------------------------------------------------------------
def test_true_and_infinity_go_to_dead_letters_with_their_reason(server, r, keys, clock, sleeps):
    server.expect_request("/nwis/iv/").respond_with_data(
        usgs_variant({"01491000:00065": [("2020-02-13T17:00:00.000-05:00", "Infinity"),
                                         ("2020-02-13T17:15:00.000-05:00", "4.41")]}),
        content_type="application/json")
    server.expect_request("/flood-monitoring/id/stations/1491TH").respond_with_data(
        _ea_station_with(True), content_type="application/json")
    c_usgs = coordinator(usgs.USGSSource({"url": server.url_for("/nwis/iv/"), "sites": ["01491000"]}),
                         r, keys, clock, sleeps)
    c_ea = coordinator(EASource({"base_url": server.url_for("/flood-monitoring"), "stations": ["1491TH"],
                                 "floods": False}), r, keys, clock, sleeps)
    assert c_usgs.poll().rejected == 1 and c_ea.poll().rejected == 1
    got = {(d["source"], d["reason"]) for d in deadletters(r, keys)}
    assert got == {("usgs", "non-finite value 'Infinity'"), ("ea", "non-numeric value True")}
    taken = readings_in_stream(r, keys)
    assert all(math.isfinite(v) for *_x, v in taken) and ("ea:1491TH", "water_level") not in {
        (s, k) for s, k, _t, _v in taken}
    assert [v for s, _k, _t, v in taken if s == "ea:1491TH:downstage"] == [1.877]


def test_fixture_values_are_all_taken_as_before():
    assert len(usgs.parse(fixture_bytes("usgs_iv.json")).readings) == 4
    assert len(ea.parse(fixture_bytes("ea_readings.json")).readings) == 8
    assert len(open_meteo.parse(fixture_bytes("open_meteo.json")).forecasts) == 48
