"""`python -m command replay` end to end on a real Redis: every rule kind, quarantine, reports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis

from command.keys import Keys
from command.scenarios.replay import run_replay

from .conftest import ROOT, SCENARIOS


def replay(cli_env, scenario, out, *extra):
    return subprocess.run([sys.executable, "-m", "command", "replay", str(scenario), "--speed", "max",
                           "--out", str(out), *extra], cwd=ROOT, env=cli_env, capture_output=True,
                          text=True, timeout=120)


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def summary(alerts):
    """(rule, subject, highest level, opened hh:mm, resolved hh:mm or None, first breach hh:mm)."""
    def hm(s):
        return None if s is None else s[11:16]
    return [(a["rule"], a["subject"], a["level"], hm(a["opened_at"]), hm(a["resolved_at"]), hm(a["first_breach_at"]))
            for a in alerts]


def test_threshold_scenario(cli_env, tmp_path):
    proc = replay(cli_env, SCENARIOS / "rule_threshold", tmp_path)
    assert proc.returncode == 0, proc.stderr
    alerts = read_jsonl(tmp_path / "alerts.jsonl")
    assert summary(alerts) == [
        ("river-stage", "WL-A", "orange", "01:00", "03:00", "00:30"),
        ("river-stage", "WL-F", "yellow", "01:00", "02:00", "00:30"),
    ]
    wla, wlf = alerts
    assert wla["opened_at"] == "2026-07-01T01:00:00+08:00"  # ISO 8601 with the scenario's offset
    assert wla["peak_value"] == 2.95
    assert wlf["peak_value"] == pytest.approx(7.2 * 0.3048)  # feet converted to metres
    assert len({a["fingerprint"] for a in alerts}) == 2

    recs = read_jsonl(tmp_path / "recommendations.jsonl")
    # on opening, and again when WL-A rises to orange; P3 is out of service and P4 dispatched though nearer.
    # WL-A and WL-F open together and share the two pumps (docs/dispatch.md); at orange WL-A takes both
    assert [(r["subject"], r["level"], r["resource_ids"]) for r in recs] == [
        ("WL-A", "yellow", ["P1"]), ("WL-F", "yellow", ["P2"]), ("WL-A", "orange", ["P1", "P2"]),
        ("WL-F", "yellow", [])]
    first = recs[0]["items"][0]
    assert first["distance_km"] == pytest.approx(0.96, abs=0.01)
    assert first["department"] == "water_authority" and first["reason"].startswith("Pump 1 \u2014 leave by 01:13")
    assert recs[0]["fingerprint"] == wla["fingerprint"]
    assert recs[0]["deadline"] == "2026-07-01T01:15:00+08:00"  # orange in about 15 min
    assert recs[3]["reason"].startswith("Re-planned at 01:45 when WL-A (orange, river-stage) rose.")

    quarantine = read_jsonl(tmp_path / "quarantine.jsonl")
    assert [(q["line"], q["reason"]) for q in quarantine] == [
        (35, "empty value"), (36, "non-numeric value 'n/a'"), (37, "unknown station 'WL-Z'"),
        (38, "unknown unit 'furlong'")]
    assert quarantine[2]["row"]["station_id"] == "WL-Z"

    report = json.loads((tmp_path / "after_action.json").read_text())
    assert report["alerts_by_level"] == {"yellow": 1, "orange": 1, "red": 0}
    assert report["breach_to_alert"]["river-stage"]["median_s"] == 1800
    assert report["totals"]["quarantined"] == 4
    events = [(e["event"], e["subject"], e["level"]) for e in report["timeline"]]
    assert events == [("open", "WL-A", "yellow"), ("open", "WL-F", "yellow"), ("raise", "WL-A", "orange"),
                      ("resolve", "WL-F", "yellow"), ("lower", "WL-A", "yellow"), ("resolve", "WL-A", "yellow")]
    html = (tmp_path / "after_action.html").read_text()
    assert "After-action report" in html and "unknown unit &#39;furlong&#39;" in html and "EXERCISE" in html


def test_rate_of_rise_scenario(cli_env, tmp_path):
    assert replay(cli_env, SCENARIOS / "rule_rate_of_rise", tmp_path).returncode == 0
    alerts = read_jsonl(tmp_path / "alerts.jsonl")
    assert summary(alerts) == [("rapid-rise", "WL-A", "red", "01:45", "03:00", "01:30")]
    assert alerts[0]["peak_value"] == pytest.approx(0.8) and alerts[0]["unit"] == "m/h"
    recs = read_jsonl(tmp_path / "recommendations.jsonl")
    assert [(r["level"], r["resource_ids"]) for r in recs] == [("orange", ["C1"]), ("red", ["C1"])]


def test_accumulation_scenario(cli_env, tmp_path):
    assert replay(cli_env, SCENARIOS / "rule_accumulation", tmp_path).returncode == 0
    alerts = read_jsonl(tmp_path / "alerts.jsonl")
    assert summary(alerts) == [("heavy-rain", "RF-A", "red", "01:00", "02:30", "01:00")]
    assert alerts[0]["peak_value"] == pytest.approx(45.0)


def test_stale_scenario(cli_env, tmp_path):
    assert replay(cli_env, SCENARIOS / "rule_stale", tmp_path).returncode == 0
    alerts = read_jsonl(tmp_path / "alerts.jsonl")
    assert summary(alerts) == [
        ("sensor-silent", "WL-F", "yellow", "01:00", None, "01:00"),  # never reported: open at the end
        ("sensor-silent", "WL-A", "yellow", "01:45", "03:00", "01:45"),
    ]
    assert alerts[0]["status"] == "open" and alerts[0]["resolved_at"] is None


def test_zone_incident_scenario(cli_env, tmp_path):
    assert replay(cli_env, SCENARIOS / "rule_zone_incident", tmp_path).returncode == 0
    alerts = read_jsonl(tmp_path / "alerts.jsonl")
    assert summary(alerts) == [
        ("incident-in-risk-zone", "I1", "red", "01:00", "03:00", "01:00"),
        ("incident-in-risk-zone", "I4", "red", "02:00", None, "02:00"),
        ("incident-in-risk-zone", "INJ-1", "red", "02:30", None, "02:30"),  # arrived as an inject
    ]
    recs = read_jsonl(tmp_path / "recommendations.jsonl")
    # one ambulance and two boats for three red incidents: shared out, and re-planned as they open and close
    assert [(r["subject"], r["resource_ids"]) for r in recs] == [
        ("I1", ["B1", "A1"]), ("I4", ["B1"]), ("I1", ["B2", "A1"]), ("INJ-1", ["B2"]), ("I1", ["B1", "A1"]),
        ("I4", []), ("I4", ["B1", "A1"])]
    report = json.loads((tmp_path / "after_action.json").read_text())
    assert any(e["event"] == "inject:incident" for e in report["timeline"])
    assert [q["reason"] for q in read_jsonl(tmp_path / "quarantine.jsonl")] == [
        "lat: a number from -90 to 90"]


def test_bad_scenario_exits_non_zero_with_a_clear_message(cli_env, tmp_path):
    proc = replay(cli_env, tmp_path / "no-such-scenario", tmp_path / "out")
    assert proc.returncode == 2
    assert "error: bad scenario:" in proc.stderr and "not a scenario folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "scenario.yaml").write_text("name: x\nstart: [2026\n")
    proc = replay(cli_env, bad, tmp_path / "out")
    assert proc.returncode == 2 and "scenario.yaml:" in proc.stderr and "invalid YAML" in proc.stderr


def test_progress_is_shown(cli_env, tmp_path):
    proc = replay(cli_env, SCENARIOS / "jiangcheng_flood", tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("replay")]
    assert len(lines) >= 2 and lines[-1].startswith("replay 100.0%")
    assert "scenario time 2026-07-15T" in lines[-1]


def test_default_scenario_produces_every_rule_kind(cli_env, tmp_path):
    proc = replay(cli_env, SCENARIOS / "jiangcheng_flood", tmp_path, "--quiet")
    assert proc.returncode == 0, proc.stderr
    alerts = read_jsonl(tmp_path / "alerts.jsonl")
    kinds = {a["rule_kind"] for a in alerts}
    assert kinds == {"threshold", "rate_of_rise", "accumulation", "stale", "zone_incident"}
    # the deliberate faults: 3 empty, 2 non-numeric, 2 unknown station, 1 unknown unit
    reasons = [q["reason"] for q in read_jsonl(tmp_path / "quarantine.jsonl")]
    assert sum(r == "empty value" for r in reasons) == 3
    assert sum(r.startswith("non-numeric") for r in reasons) == 2
    assert sum(r.startswith("unknown station") for r in reasons) == 2
    assert sum(r.startswith("unknown unit") for r in reasons) == 1
    silent = [a for a in alerts if a["rule"] == "sensor-silent"]
    assert [(a["subject"], a["opened_at"][11:16], a["resolved_at"][11:16]) for a in silent] == [
        ("WL-012", "22:45", "02:00")]


def test_each_replay_has_its_own_namespace(r, redis_url):
    a = run_replay(r, SCENARIOS / "rule_threshold")
    b = run_replay(r, SCENARIOS / "rule_accumulation")
    assert a.namespace != b.namespace
    assert r.zcard(Keys(a.namespace).alerts_index) == 2
    assert r.zcard(Keys(b.namespace).alerts_index) == 1
    assert r.zcard(Keys("live").alerts_index) == 0
    assert live_keys(r) == []


def live_keys(r) -> list[bytes]:
    """Every key of `live`, its shard keys (`ecd:{live:s0}:...`) included."""
    return [k for p in Keys("live").pattern() for k in r.scan_iter(match=p)]


def test_live_keys_sees_a_leaked_shard_key(r):
    r.set(Keys("live").shard_state(0), "x")
    assert live_keys(r) == [b"ecd:{live:s0}:state"]


def test_replay_at_a_speed_paces_on_the_scenario_clock(r):
    """At 36,000x, 4 scenario hours take about 0.4 s of wall time, and give the same alerts as max."""
    import time

    t0 = time.monotonic()
    paced = run_replay(r, SCENARIOS / "rule_accumulation", speed=36_000)
    elapsed = time.monotonic() - t0
    fast = run_replay(r, SCENARIOS / "rule_accumulation", speed=None)
    assert elapsed >= 0.25
    ka, kb = Keys(paced.namespace), Keys(fast.namespace)
    ea = [f[b"alert"] for _, f in r.xrange(ka.alerts_stream)]
    eb = [f[b"alert"] for _, f in r.xrange(kb.alerts_stream)]
    assert ea == eb and len(ea) == 4


def test_discard_removes_the_namespace(r, tmp_path):
    res = run_replay(r, SCENARIOS / "rule_threshold", out=tmp_path, keep=False)
    assert (tmp_path / "alerts.jsonl").exists()
    assert not [k for k in r.scan_iter(match=f"*{res.namespace}*")]


def test_discard_deletes_only_its_own_namespace(r, tmp_path):
    from command.keys import DRILL_COMMANDS, login_failures
    from command.scenarios.namespaces import delete_namespace

    r.xadd(DRILL_COMMANDS, {"cmd": "pause"})
    r.set(login_failures("x"), 1)
    other = run_replay(r, SCENARIOS / "rule_accumulation")
    before = {k for k in r.scan_iter()}
    res = run_replay(r, SCENARIOS / "rule_threshold", out=tmp_path, keep=False)
    assert {k for k in r.scan_iter()} == before
    assert delete_namespace(r, Keys(other.namespace)) > 0
    assert set(r.scan_iter()) == {DRILL_COMMANDS.encode(), login_failures("x").encode()}
    assert res.namespace != other.namespace


def test_deleting_a_namespace_takes_it_out_of_the_global_registries(r):
    from command.keys import ACK_TIMER_NAMESPACES, AUDIT_NAMESPACES
    from command.scenarios.namespaces import delete_namespace

    res = run_replay(r, SCENARIOS / "rule_threshold")
    r.sadd(ACK_TIMER_NAMESPACES, res.namespace, "another")
    r.sadd(AUDIT_NAMESPACES, res.namespace)
    delete_namespace(r, Keys(res.namespace))
    assert r.smembers(ACK_TIMER_NAMESPACES) == {b"another"} and not r.exists(AUDIT_NAMESPACES)


def test_a_namespace_named_like_a_global_key_is_refused(cli_env, r, tmp_path):
    r.xadd("ecd:drills:commands", {"cmd": "pause"})
    for ns in ("drills", "auth", "live\n"):
        proc = replay(cli_env, SCENARIOS / "rule_accumulation", tmp_path, "--namespace", ns, "--discard")
        assert proc.returncode != 0 and "invalid namespace" in proc.stderr
    assert r.xlen("ecd:drills:commands") == 1


def test_bootstrap_live_loads_the_sample_once_without_faults_or_clock(r):
    from command.clock import namespace_now
    from command.scenarios.namespaces import bootstrap_live

    live = Keys("live")
    bootstrap_live(r, SCENARIOS / "rule_threshold")
    assert r.hget(live.meta, "mode") == b"live" and r.exists(live.rules) and r.hlen(live.stations) > 0
    assert namespace_now(r, live) is None  # no clock until the first live tick
    assert r.xlen(live.deadletter) == 0  # the sample's deliberate faults stay in the exercise
    version = r.hget(live.meta, "registry_version")
    bootstrap_live(r, SCENARIOS / "rule_accumulation")  # live has rules: nothing changes
    assert r.hget(live.meta, "registry_version") == version


def test_redis_url_is_used(cli_env, tmp_path, redis_url):
    """The CLI writes to the server REDIS_URL names (not an embedded one)."""
    proc = replay(cli_env, SCENARIOS / "rule_accumulation", tmp_path)
    assert proc.returncode == 0
    ns = proc.stdout.split("namespace ")[1].split()[0]
    assert redis.Redis.from_url(redis_url).zcard(Keys(ns).alerts_index) == 1
    assert not (tmp_path / "var" / "redis").exists()


def test_prepare_namespace_for_live_feeds(r, tmp_path):
    from command.clock import namespace_now
    from command.rules import RuleError
    from command.scenarios.namespaces import prepare_namespace

    keys = Keys("rec-test")
    prepare_namespace(r, keys, mode="record", shards=2)
    assert r.hget(keys.meta, "mode") == b"record" and r.hget(keys.meta, "shards") == b"2"
    assert r.exists(keys.rules) and r.hget(keys.meta, "registry_version") == b"1"  # the sample's rules
    assert namespace_now(r, keys) is not None  # the live edge: the wall clock's time
    r.set(keys.clock, 5)
    prepare_namespace(r, keys)  # again: nothing to change, the clock kept
    assert namespace_now(r, keys) == 5 and r.hget(keys.meta, "registry_version") == b"1"
    bad = tmp_path / "rules.yaml"
    bad.write_text("levels: [a]\nrules: []\n")
    with pytest.raises(RuleError, match="rules.yaml"):
        prepare_namespace(r, keys, rules=bad)


def scripted_copy(tmp_path, actions: str):
    """rule_zone_incident in tmp_path with `actions:` appended to its scenario.yaml."""
    import shutil

    for name in ("rule_zone_incident", "tiny_common"):
        shutil.copytree(SCENARIOS / name, tmp_path / name)
    sy = tmp_path / "rule_zone_incident" / "scenario.yaml"
    sy.write_text(sy.read_text(encoding="utf-8") + actions, encoding="utf-8")
    return tmp_path / "rule_zone_incident"


def test_scripted_actions_dispatch_and_report_tasks(cli_env, tmp_path):
    folder = scripted_copy(tmp_path, """actions:
  - {at: 2h05m, type: dispatch, rule: incident-in-risk-zone, subject: I4}
  - {at: 2h10m, type: task_status, rule: incident-in-risk-zone, subject: I4, department: fire_rescue, status: acknowledged}
  - {at: 2h20m, type: task_status, rule: incident-in-risk-zone, subject: I4, department: fire_rescue, status: en_route, note: Boat 1 on its way}
  - {at: 2h40m, type: task_status, rule: incident-in-risk-zone, subject: I4, department: fire_rescue, status: completed}
  - {at: 2h41m, type: task_status, rule: incident-in-risk-zone, subject: NOPE, department: fire_rescue, status: completed}
""")
    out = tmp_path / "out"
    assert replay(cli_env, folder, out).returncode == 0
    tasks = read_jsonl(out / "tasks.jsonl")
    assert [(t["subject"], t["department"], t["resource_ids"], t["status"]) for t in tasks] == [
        ("I4", "fire_rescue", ["B1"], "completed")]
    h = tasks[0]["history"]
    assert [(x["status"], x["at"][11:], x["by"], x["note"]) for x in h] == [
        ("acknowledged", "02:10:00+08:00", "scripted", ""), ("en_route", "02:20:00+08:00", "scripted", "Boat 1 on its way"),
        ("completed", "02:40:00+08:00", "scripted", "")]
    # the dispatch took Boat 1 out of the plan: the next recommendations do not propose it
    recs = read_jsonl(out / "recommendations.jsonl")
    later = [r for r in recs if r["created_at"][11:16] > "02:05"]
    assert later and all("B1" not in r["resource_ids"] for r in later)
    # an action that cannot be applied is quarantined with its reason
    q = read_jsonl(out / "quarantine.jsonl")
    assert any("action #5" in x["reason"] and "no task of fire_rescue for NOPE" in x["reason"] for x in q)


def test_scripted_actions_are_validated(tmp_path):
    from command.scenarios.load import ScenarioError, load_scenario

    bad = scripted_copy(tmp_path, "actions:\n  - {at: 1h, type: teleport, rule: x, subject: y}\n")
    with pytest.raises(ScenarioError, match=r"scenario.yaml: action #1: `type` must be one of dispatch, task_status"):
        load_scenario(bad)
    sy = bad / "scenario.yaml"
    sy.write_text(sy.read_text(encoding="utf-8").replace("type: teleport, rule: x, subject: y",
                                                         "type: task_status, rule: x, subject: y, department: d, status: done"))
    with pytest.raises(ScenarioError, match=r"action #1 \(task_status\): `status` must be one of"):
        load_scenario(bad)
