"""`feeds parse`, `feeds run --once` and `record` on the command line; a recorded event replays to
the same alerts as it raised live."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import yaml
from werkzeug import Response

from command.engine.consumer import Engine
from command.keys import Keys
from command.publish.report import collect_alerts
from command.scenarios.load import load_scenario
from command.scenarios.replay import run_replay
from feeds.health import read_health
from feeds.record import record
from feeds.usgs import USGSSource

from ..conftest import ROOT
from .conftest import FIX, usgs_variant


def cli(env, *args, stdin=None):
    return subprocess.run([sys.executable, "-m", "command", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, input=stdin)


def lines(proc):
    return [json.loads(x) for x in proc.stdout.splitlines()]


def test_feeds_parse_each_source_prints_si_json_lines(cli_env):
    p = cli(cli_env, "feeds", "parse", "usgs", str(FIX / "usgs_iv.json"))
    assert p.returncode == 0, p.stderr
    rd = [x for x in lines(p) if x["type"] == "reading"]
    assert rd[1] == {"type": "reading", "station_id": "usgs:01491000", "kind": "water_level",
                     "time": "2020-02-13T22:15:00+00:00", "value": 4.36 * 0.3048, "unit": "m"}
    p = cli(cli_env, "feeds", "parse", "ea", str(FIX / "ea_stations.json"))
    assert p.returncode == 0 and any(x["type"] == "rejected" and "no lat/long" in x["reason"] for x in lines(p))
    p = cli(cli_env, "feeds", "parse", "open-meteo", str(FIX / "open_meteo.json"), "--point", "paris",
            "--issued", "2024-08-17T00:00:00+02:00", "--no-stations")
    fc = lines(p)
    assert p.returncode == 0 and len(fc) == 48 and fc[0]["issued"] == "2024-08-16T22:00:00+00:00"
    assert {x["type"] for x in fc} == {"forecast"} and fc[0]["station_id"] == "om:paris"
    p = cli(cli_env, "feeds", "parse", "nws", str(FIX / "nws_alerts.geojson"))
    w = lines(p)[0]
    assert p.returncode == 0 and w["type"] == "warning" and w["onset"] == "2019-12-20T21:34:00+00:00"
    p = cli(cli_env, "feeds", "parse", "cap", str(FIX / "cap_taiwan_wra_reservoir_2014.xml"))
    assert p.returncode == 0 and lines(p)[0]["event"] == "水庫洩洪"


def test_feeds_parse_unreadable_payload_exits_non_zero_with_a_message(cli_env, tmp_path):
    p = cli(cli_env, "feeds", "parse", "open-meteo", str(FIX / "open_meteo_error.json"))
    assert p.returncode == 1 and "Open-Meteo error: Invalid timezone" in p.stderr and p.stdout == ""
    trunc = tmp_path / "trunc.json"
    trunc.write_bytes((FIX / "usgs_iv.json").read_bytes()[:3000])
    p = cli(cli_env, "feeds", "parse", "usgs", str(trunc))
    assert p.returncode == 1 and "truncated JSON" in p.stderr
    p = cli(cli_env, "feeds", "parse", "cap", "-", stdin="<html><title>Gateway Timeout</title></html>")
    assert p.returncode == 1 and "root element <html>" in p.stderr
    p = cli(cli_env, "feeds", "parse", "usgs", str(tmp_path / "missing.json"))
    assert p.returncode == 2 and "cannot read" in p.stderr
    p = cli(cli_env, "feeds", "parse", "bom", str(trunc))
    assert p.returncode == 2


def test_feeds_run_once_against_the_local_server(cli_env, server, tmp_path, r):
    server.expect_request("/nwis/iv/").respond_with_data((FIX / "usgs_iv.json").read_bytes(),
                                                         content_type="application/json")
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"sources": {"usgs": {"enabled": True, "url": server.url_for("/nwis/iv/"),
                                                        "sites": ["01491000", "01645000"]}}}))
    p = cli(cli_env, "feeds", "run", "--config", str(cfg), "--namespace", "clitest", "--once")
    assert p.returncode == 0, p.stderr
    assert "usgs: ok; 4 new readings" in p.stdout
    assert read_health(r, Keys("clitest"), "usgs")["readings"] == 4
    p = cli(cli_env, "feeds", "run", "--config", str(ROOT / "feeds.yaml"), "--once")
    assert p.returncode == 2 and "no source is enabled" in p.stderr  # the default works offline: all off


def test_default_feeds_yaml_is_valid_and_all_sources_are_off():
    from feeds.runner import build_sources, load_config

    cfg = load_config(ROOT / "feeds.yaml")
    assert build_sources(cfg) == []
    assert sorted(cfg["sources"]) == ["cap", "ea", "nws", "open-meteo", "usgs"]


T = ["2020-02-13T17:00:00.000-05:00", "2020-02-13T17:15:00.000-05:00", "2020-02-13T17:30:00.000-05:00"]


def _poll_payloads() -> list[bytes]:
    """Four polls of a rising then falling river at one site (ft), three readings a poll, overlapping."""
    feet = [4.0, 4.2, 4.4, 4.6, 4.8, 5.0, 5.1, 4.9, 4.5, 4.2, 4.0, 3.9]
    out = []
    for p in range(4):
        vals = []
        for i in range(max(0, 3 * p - 1), 3 * p + 3):  # each poll repeats the previous poll's last reading
            hh, mm = divmod(16 * 60 + 15 * i, 60)
            vals.append((f"2020-02-13T{hh:02d}:{mm:02d}:00.000-05:00", f"{feet[i]:.2f}"))
        out.append(usgs_variant({"01491000:00065": vals}))
    return out


def test_record_from_the_local_server_replays_to_the_same_alerts(server, r, tmp_path):
    payloads = _poll_payloads()
    count = {"n": 0}
    lock = threading.Lock()

    def handler(_req):
        with lock:
            i = min(count["n"], len(payloads) - 1)
            count["n"] += 1
        return Response(payloads[i], content_type="application/json")

    server.expect_request("/nwis/iv/").respond_with_handler(handler)
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"levels": ["yellow", "orange", "red"], "rules": [
        {"id": "stage", "kind": "threshold", "match": {"kind": "water_level"},
         "above": {"yellow": 1.30, "orange": 1.40, "red": 1.50}},
        {"id": "flow", "kind": "threshold", "match": {"kind": "discharge"}, "above": {"yellow": 10.0}}]}))
    src = USGSSource({"url": server.url_for("/nwis/iv/"), "sites": ["01491000", "01645000"], "interval": "50ms"})
    folder = tmp_path / "recorded"
    res = record(r, [src], hours=1, out=folder, rules=rules, max_polls=4, namespace="rec-live", keep=True)
    assert count["n"] == 4 and res.readings == 12 + 2 + 1  # 12 stage + 2 other-site series + 1 flow here
    # what the engine raised while the feed ran live
    eng = Engine(r, Keys("rec-live"), consumer="live")
    eng.start()
    eng.drain()
    eng.release()
    live = collect_alerts(r, Keys("rec-live"))
    assert [(a["rule"], a["subject"], a["peak_level"], a["status"]) for a in live] == [
        ("stage", "usgs:01491000", "red", "resolved"), ("flow", "usgs:01491000", "yellow", "open")]
    # the folder is a valid scenario, and replaying it gives the very same alerts
    sc = load_scenario(folder)
    assert len(sc.readings) == 15 and set(sc.stations) == {"usgs:01491000", "usgs:01645000"}
    replayed = collect_alerts(r, Keys(run_replay(r, folder).namespace))

    def key(a):
        return (a["fingerprint"], a["rule"], a["subject"], a["peak_level"], a["opened_at"], a["resolved_at"],
                round(a["peak_value"], 9))

    assert [key(a) for a in replayed] == [key(a) for a in live]
    assert (folder / "warnings.jsonl").exists() and (folder / "rules.yaml").exists()


def test_record_command_line(cli_env, server, tmp_path):
    server.expect_request("/nwis/iv/").respond_with_data((FIX / "usgs_iv.json").read_bytes(),
                                                         content_type="application/json")
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(yaml.safe_dump({"sources": {"usgs": {"url": server.url_for("/nwis/iv/"), "interval": "50ms",
                                                        "sites": ["01491000", "01645000"]}}}))
    out = tmp_path / "sc"
    p = cli(cli_env, "record", "--sources", "usgs", "--hours", "0.001", "--out", str(out), "--config", str(cfg),
            "--max-polls", "2")
    assert p.returncode == 0, p.stderr
    assert "recorded 4 readings from 2 stations" in p.stdout
    p = cli(cli_env, "replay", str(out), "--out", str(tmp_path / "o"), "--discard")
    assert p.returncode == 0, p.stderr
    p = cli(cli_env, "record", "--sources", "nope", "--hours", "1", "--out", str(out), "--config", str(cfg))
    assert p.returncode == 2 and "no source named nope" in p.stderr
