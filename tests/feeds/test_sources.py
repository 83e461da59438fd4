"""Each adapter on its recorded payload: values, SI units, times, and the quirks of each service."""

from __future__ import annotations

import json

import pytest

from command.timeutil import parse_time
from feeds import cap_feed, ea, nws, open_meteo, usgs
from feeds.errors import PayloadError

from .conftest import fixture_bytes, fixture_json


# ---- USGS ------------------------------------------------------------------------------------------
def test_usgs_string_values_converted_from_feet_and_cubic_feet():
    res = usgs.parse(fixture_bytes("usgs_iv.json"))
    got = {(x.station_id, x.kind): x for x in res.readings}
    assert got[("usgs:01491000", "water_level")].value == pytest.approx(4.36 * 0.3048)
    assert got[("usgs:01491000", "water_level")].unit == "m"
    assert got[("usgs:01491000", "discharge")].value == pytest.approx(439 * 0.028316846592)
    assert got[("usgs:01491000", "discharge")].unit == "m3/s"
    assert got[("usgs:01645000", "water_level")].value == pytest.approx(2.68 * 0.3048)


def test_usgs_site_local_offsets_and_different_latest_times():
    res = usgs.parse(fixture_bytes("usgs_iv.json"))
    got = {(x.station_id, x.kind): x.t for x in res.readings}
    assert got[("usgs:01491000", "water_level")] == parse_time("2020-02-13T22:15:00+00:00")
    assert got[("usgs:01645000", "water_level")] == parse_time("2020-02-13T21:50:00+00:00")


def test_usgs_site_metadata_becomes_stations():
    st = {s.id: s for s in usgs.parse(fixture_bytes("usgs_iv.json")).stations}
    assert set(st) == {"usgs:01491000", "usgs:01645000"}
    assert st["usgs:01491000"].name == "CHOPTANK RIVER NEAR GREENSBORO, MD"
    assert (st["usgs:01491000"].lat, st["usgs:01491000"].lon) == (38.99719444, -75.7858056)
    assert st["usgs:01491000"].kind == "water_level" and st["usgs:01491000"].unit == "m"


def test_usgs_nodata_number_against_string_value_is_rejected():
    doc = fixture_json("usgs_iv.json")
    doc["value"]["timeSeries"][1]["values"][0]["value"][0]["value"] = "-999999"
    res = usgs.parse(json.dumps(doc).encode())
    assert len(res.readings) == 3
    assert [r.reason for r in res.rejected] == ["no-data value -999999 (the series' noDataValue)"]
    assert res.rejected[0].record["series"] == "USGS:01491000:00065:00000"


def test_usgs_html_entity_in_variable_name_of_an_unused_parameter():
    doc = fixture_json("usgs_iv.json")
    doc["value"]["timeSeries"][0]["variable"]["variableCode"][0]["value"] = "99999"
    res = usgs.parse(json.dumps(doc).encode())
    assert "(Streamflow, ft³/s) is not a reading kind" in res.rejected[0].reason
    assert len(res.readings) == 3


def test_usgs_wrong_shape_is_a_payload_error():
    with pytest.raises(PayloadError, match="no value.timeSeries"):
        usgs.parse(b'{"value": {}}')


# ---- UK Environment Agency ----------------------------------------------------------------------------
def test_ea_station_list_tolerates_missing_measures_position_and_status_array():
    res = ea.parse(fixture_bytes("ea_stations.json"))
    ids = {s.id for s in res.stations}
    assert {"ea:067027_TG_127", "ea:3319SE", "ea:F1906", "ea:E70039", "ea:E7050"} <= ids
    assert "ea:E9030" not in ids  # no lat/long: no station, said so
    assert any("no lat/long" in r.reason and r.record["gridReference"] == "TQ3910" for r in res.rejected)
    assert {s.id: s.kind for s in res.stations}["ea:F1906"] == "water_level"  # level and flow: a level station
    assert all(not s.thresholds for s in res.stations)  # list view: stageScale is only a URL
    assert {"ea:4615TH:downstage", "ea:4615TH:height"} <= ids
    assert res.readings == []


def test_ea_single_station_stage_scale_gives_thresholds_and_latest_readings():
    res = ea.parse(fixture_bytes("ea_station_1491TH.json"))
    st = {s.id: s for s in res.stations}
    assert st["ea:1491TH"].thresholds == {"yellow": 2.4, "orange": 2.678, "red": 2.722}
    assert st["ea:1491TH:downstage"].thresholds == {"yellow": 1.605, "orange": 2.31, "red": 2.61}
    rd = {x.station_id: x for x in res.readings}
    assert rd["ea:1491TH"].value == 2.098 and rd["ea:1491TH:downstage"].value == 1.877
    assert rd["ea:1491TH"].t == parse_time("2020-02-17T20:00:00Z")


def test_ea_readings_newest_first_unit_from_measure_suffix():
    res = ea.parse(fixture_bytes("ea_readings.json"))
    assert len(res.readings) == 8 and {x.station_id for x in res.readings} == {"ea:690140"}
    assert res.readings[0].t == parse_time("2015-12-10T16:00:00Z") and res.readings[0].value == 0.754
    assert res.readings[-1].t == parse_time("2015-12-10T14:15:00Z")
    assert all(x.kind == "water_level" and x.unit == "m" for x in res.readings)


def test_ea_flood_times_without_timezone_are_uk_local():
    res = ea.parse(fixture_bytes("ea_floods.json"))
    w = {x.id: x for x in res.warnings}
    assert len(w) == 5
    assert w["ea:122WAF946"].sent == parse_time("2015-12-10T14:14:00+00:00")  # GMT in December
    summer = fixture_json("ea_flood_93474.json")
    summer["items"]["timeMessageChanged"] = "2015-07-10T09:14:00"
    s = ea.parse(json.dumps(summer).encode()).warnings[0]
    assert s.sent == parse_time("2015-07-10T09:14:00+01:00")  # BST in July


def test_ea_flood_severity_levels_map_to_cap_words():
    w = {x.id: x for x in ea.parse(fixture_bytes("ea_floods.json")).warnings}
    assert (w["ea:122FWF723"].event, w["ea:122FWF723"].severity) == ("Flood Warning", "Severe")
    assert (w["ea:122WAF946"].event, w["ea:122WAF946"].severity) == ("Flood Alert", "Moderate")
    assert w["ea:013WAFDEE"].geocodes == {"EA_FWD": ["013WAFDEE"]}
    doc = fixture_json("ea_flood_93474.json")
    doc["items"]["severityLevel"] = 4
    gone = ea.parse(json.dumps(doc).encode()).warnings[0]
    assert gone.msg_type == "Cancel" and gone.references == ["ea:031WAF114"]


def test_ea_single_flood_object_with_expanded_area_gives_a_point():
    w = ea.parse(fixture_bytes("ea_flood_93474.json")).warnings[0]
    assert w.id == "ea:031WAF114" and w.geometry["type"] == "Point"
    assert w.geometry["coordinates"] == pytest.approx([-2.99314567228076, 52.765501928560823])
    assert "Llanymynech" in w.description and w.area_desc == "Severn Vyrnwy Confluence (Shropshire)"


# ---- Open-Meteo -----------------------------------------------------------------------------------------
def test_open_meteo_local_wall_clock_times_to_utc_and_kmh_to_ms():
    res = open_meteo.parse(fixture_bytes("open_meteo.json"), point="paris")
    assert res.readings == []  # forecasts are never observations
    rain = [x for x in res.forecasts if x.kind == "rainfall"]
    wind = [x for x in res.forecasts if x.kind == "wind_speed"]
    assert len(rain) == len(wind) == 24
    assert rain[0].t == parse_time("2024-08-17T00:00:00+02:00")  # Europe/Paris, CEST
    peak = max(rain, key=lambda x: x.value)
    assert peak.value == 7.3 and peak.t == parse_time("2024-08-17T14:00:00+02:00") and peak.unit == "mm"
    assert wind[0].value == pytest.approx(4.8 / 3.6) and wind[0].unit == "m/s"
    assert {x.issued for x in res.forecasts} == {rain[0].t}  # no run time given: the first hour
    st = res.stations[0]
    assert st.id == "om:paris" and st.kind == "rainfall" and (st.lat, st.lon) == (48.86, 2.3399997)


def test_open_meteo_issue_time_is_kept_on_every_value():
    issued = parse_time("2024-08-16T21:00:00+00:00")
    res = open_meteo.parse(fixture_bytes("open_meteo.json"), point="paris", issued=issued)
    assert {x.issued for x in res.forecasts} == {issued}


def test_open_meteo_null_inside_an_array_is_a_rejected_value():
    doc = fixture_json("open_meteo.json")
    doc["hourly"]["precipitation"][11] = None
    res = open_meteo.parse(json.dumps(doc).encode())
    assert len([x for x in res.forecasts if x.kind == "rainfall"]) == 23
    assert res.rejected[0].reason == "missing value (null)" and res.rejected[0].record["time"] == "2024-08-17T11:00"


def test_open_meteo_daily_only_payload_parses_with_a_reason():
    res = open_meteo.parse(fixture_bytes("open_meteo_daily_gmt.json"))
    assert res.forecasts == [] and "daily forecast" in res.rejected[0].reason


def test_open_meteo_error_body_is_a_payload_error():
    with pytest.raises(PayloadError, match="Open-Meteo error: Invalid timezone"):
        open_meteo.parse(fixture_bytes("open_meteo_error.json"))


# ---- NWS -----------------------------------------------------------------------------------------------
def test_nws_flood_watch_with_null_geometry_keeps_geocodes_and_local_offsets():
    w = nws.parse(fixture_bytes("nws_alerts.geojson")).warnings[0]
    assert w.id == "nws:NWS-IDP-PROD-3965873-3369046" and w.event == "Flood Watch"
    assert w.geometry is None and "ORZ004" in w.geocodes["UGC"] and "ORZ004" in w.geocodes["NWS_ZONE"]
    assert (w.severity, w.urgency, w.certainty, w.msg_type) == ("Severe", "Future", "Possible", "Update")
    assert w.onset == parse_time("2019-12-20T21:34:00+00:00")  # -08:00 applied
    assert w.expires < w.ends and w.until == w.ends
    assert len(w.references) == 4 and w.references[0] == "nws:NWS-IDP-PROD-3964821-3368352"


def test_nws_current_format_with_unknown_severity_and_null_ends():
    ws = {x.event: x for x in nws.parse(fixture_bytes("nws_alerts_point_2024.geojson")).warnings}
    aq = ws["Air Quality Alert"]
    assert aq.ends is None and aq.instruction == "" and aq.severity == "Unknown"
    heat = ws["Excessive Heat Warning"]
    assert heat.id.startswith("nws:urn:oid:2.49.0.1.840.0.") and heat.expires < heat.onset


def test_nws_feature_without_sent_is_rejected_alone():
    doc = fixture_json("nws_alerts_point_2024.geojson")
    del doc["features"][0]["properties"]["sent"]
    res = nws.parse(json.dumps(doc).encode())
    assert len(res.warnings) == 1 and "without `sent`" in res.rejected[0].reason


# ---- CAP ----------------------------------------------------------------------------------------------
def test_cap_two_polygons_in_one_area_lat_lon_order():
    w = cap_feed.parse(fixture_bytes("cap_nws_hurricane_warning_2020.xml")).warnings[0]
    assert w.id == "cap:NWS-IDP-PROD-4412298-3677414" and w.msg_type == "Update" and len(w.references) == 8
    assert w.geometry["type"] == "MultiPolygon" and len(w.geometry["coordinates"]) == 2
    lon, lat = w.geometry["coordinates"][0][0][0]
    assert (lon, lat) == (-92.619, 30.094)  # CAP writes lat,lon; GeoJSON is [lon, lat]
    assert w.geocodes == {"UGC": ["LAZ043"], "SAME": ["022001"]}
    assert (w.severity, w.urgency, w.certainty) == ("Extreme", "Immediate", "Likely")
    assert w.onset == parse_time("2020-08-26T04:14:10-05:00")


def test_cap_utf8_bom_and_geocode_only_area():
    raw = fixture_bytes("cap_taiwan_wra_reservoir_2014.xml")
    assert raw.startswith(b"\xef\xbb\xbf")
    w = cap_feed.parse(raw).warnings[0]
    assert w.geometry is None and w.geocodes == {"Taiwan_Geocode_100": ["1000512"]}
    assert w.event == "水庫洩洪" and w.language == "zh-tw" and w.area_desc == "苗栗縣頭屋鄉"
    assert w.sent == parse_time("2014-05-14T20:10:00+08:00") and w.expires == parse_time("2014-05-14T21:10:00+08:00")


def test_cap_html_instead_of_xml_is_a_payload_error():
    with pytest.raises(PayloadError, match="root element <html>"):
        cap_feed.parse(b"<html><body>Bad gateway</body></html>")
    with pytest.raises(PayloadError, match="invalid XML"):
        cap_feed.parse(fixture_bytes("cap_taiwan_wra_reservoir_2014.xml")[:700])
