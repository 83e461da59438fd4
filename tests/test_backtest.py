"""`python -m command backtest` on the sample: two and three rule sets against the same truth, truth.csv,
the progress bar, the HTML, and the command line's exit codes."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import pytest

from command.config import SAMPLE_DATA
from command.scenarios.backtest import BacktestProgress, run_backtest
from command.scenarios.load import ScenarioError

from .conftest import ROOT, SCENARIOS

SAMPLE = SCENARIOS / "jiangcheng_flood"
SENSITIVE = SAMPLE_DATA / "rules_sensitive.yaml"
LEVELS = ["yellow", "orange", "red"]
FIGURES = {"hits", "misses", "false_alarms", "pod", "far", "csi", "lead_median_min", "lead_min_min", "lead_max_min"}
WATER_LEVEL = [f"WL-{i:03d}" for i in range(1, 21)]

STRICT = """\
levels: [yellow, orange, red]
rules:
  - {id: river-stage, kind: threshold, match: {kind: water_level}, above: thresholds, for: 1h}
  - {id: sensor-silent, kind: stale, match: {kind: water_level}, after: 1h, level: yellow}
  - {id: incident-in-risk-zone, kind: zone_incident, zones: {risk: high},
     categories: [trapped_people, levee_breach, flooding], level: red}
"""


@pytest.fixture
def sample_copy(tmp_path):
    """The sample scenario in a folder of its own (shared files by absolute path), to add a truth.csv to."""
    folder = tmp_path / "jiangcheng"
    shutil.copytree(SAMPLE, folder)
    doc = (folder / "scenario.yaml").read_text(encoding="utf-8").replace("../../", f"{SAMPLE_DATA}/")
    (folder / "scenario.yaml").write_text(doc, encoding="utf-8")
    return folder


def cli(cli_env, *args):
    return subprocess.run([sys.executable, "-m", "command", "backtest", *map(str, args)], cwd=ROOT, env=cli_env,
                          capture_output=True, text=True, timeout=180)


def by_name(report):
    return {rs["name"]: rs for rs in report["rule_sets"]}


def test_sample_backtest_scores_two_rule_sets_against_the_same_truth(r, tmp_path):
    strict = tmp_path / "rules_strict.yaml"
    strict.write_text(STRICT, encoding="utf-8")
    res = run_backtest(r, SAMPLE, [SENSITIVE, strict], out=tmp_path / "out")
    report = json.loads((tmp_path / "out" / "backtest.json").read_text(encoding="utf-8"))
    assert report == json.loads(json.dumps(res.report))

    # structure
    assert report["scenario"] == "jiangcheng_flood" and report["truth"] == "thresholds"
    assert report["lead_window_min"] == 360 and report["levels"] == LEVELS
    assert report["scored_stations"] == WATER_LEVEL  # rain gauges have no thresholds: no truth to score against
    assert report["unscored_stations"] == [f"RF-{i:03d}" for i in range(1, 13)]
    assert [rs["name"] for rs in report["rule_sets"]] == ["scenario", "rules_sensitive", "rules_strict"]
    for rs in report["rule_sets"]:
        assert set(rs["levels"]) == set(LEVELS)
        assert all(set(f) == FIGURES for f in rs["levels"].values())
        assert sorted(rs["stations"]) == WATER_LEVEL
        assert all(set(f) == FIGURES for st in rs["stations"].values() for f in st.values())
        for lv in LEVELS:  # the totals are the sums of the stations
            for k in ("hits", "misses", "false_alarms"):
                assert rs["levels"][lv][k] == sum(st[lv][k] for st in rs["stations"].values())
            assert rs["levels"][lv]["hits"] + rs["levels"][lv]["misses"] == report["events"][lv]

    # the sample's figures (docs/drills.md quotes them)
    assert report["events"] == {"yellow": 14, "orange": 9, "red": 4}
    rs = by_name(report)
    own, sens, stri = rs["scenario"], rs["rules_sensitive"], rs["rules_strict"]
    assert own["alerts"] == 40
    y = own["levels"]["yellow"]
    assert (y["hits"], y["misses"], y["false_alarms"]) == (14, 0, 1)
    assert own["stations"]["WL-012"]["yellow"]["false_alarms"] == 1  # the silent gauge's stale alert
    assert own["stations"]["WL-003"]["red"]["lead_median_min"] == -30  # river-stage waits 30 min (`for`)

    # the more sensitive set: at least as many events caught, at least as many false alarms, warned earlier
    for lv in LEVELS:
        a, b, c = own["levels"][lv], sens["levels"][lv], stri["levels"][lv]
        assert b["pod"] >= a["pod"] >= c["pod"]
        assert b["false_alarms"] >= a["false_alarms"] >= c["false_alarms"]
        assert b["lead_median_min"] >= a["lead_median_min"] >= c["lead_median_min"]
    assert sens["levels"]["yellow"]["false_alarms"] > own["levels"]["yellow"]["false_alarms"]
    assert sens["levels"]["red"]["lead_median_min"] > own["levels"]["red"]["lead_median_min"]
    assert stri["levels"]["yellow"]["lead_median_min"] < own["levels"]["yellow"]["lead_median_min"]

    # every namespace was deleted
    assert r.keys("ecd:*") == []

    html = (tmp_path / "out" / "backtest.html").read_text(encoding="utf-8")
    assert "Backtest · 回测" in html and "命中率" in html and "空报" in html
    assert "rules_sensitive" in html and 'data-station="WL-003"' in html
    assert "Plotly.newPlot" in html and "plotly.js" in html.lower()  # plotly inline ...
    assert "<script src=" not in html and 'src="http' not in html  # ... and nothing to fetch
    assert html.count('class="num best"') > 0  # the best figure of each row is marked


def test_sample_charts_show_the_truth_and_each_rule_set_as_bands(r, tmp_path):
    run_backtest(r, SAMPLE, [SENSITIVE], out=tmp_path)
    html = (tmp_path / "backtest.html").read_text(encoding="utf-8")
    raw = html.split('<script type="application/json" id="bt-charts">', 1)[1].split("</script>", 1)[0]
    charts = json.loads(raw)
    fig = charts["WL-003"]
    lanes = {t["y"][0] for t in fig["data"] if t["type"] == "bar"}
    assert lanes == {"truth · 实况", "scenario", "rules_sensitive"}
    observed = fig["data"][0]
    assert observed["name"].startswith("observed") and len(observed["x"]) > 150
    # the thresholds, in the chart's unit (m)
    assert {t["name"].split()[0] for t in fig["data"] if t.get("line", {}).get("dash") == "dash"} == set(LEVELS)
    # WL-012 never reached yellow, so its stale alert is a yellow false alarm: hatched; its truth lane is empty
    fig = charts["WL-012"]
    assert not [t for t in fig["data"] if t["type"] == "bar" and t["y"][0] == "truth · 实况"]
    own_yellow = [t for t in fig["data"] if t["type"] == "bar" and t["y"][0] == "scenario"
                  and t["marker"]["color"] == "#f2c200"]
    assert own_yellow and "x" in own_yellow[0]["marker"]["pattern"]["shape"]
    assert fig["data"][0]["x"][0] == "2026-07-14 00:00:00"  # local time of the scenario (Asia/Shanghai)


def test_truth_csv_is_the_whole_truth(r, sample_copy, tmp_path):
    (sample_copy / "truth.csv").write_text(
        "subject,level,start,end\n"
        "WL-003,red,2026-07-14T21:00:00+08:00,2026-07-15T02:00:00+08:00\n"
        "WL-012,yellow,2026-07-14T21:00:00+08:00,2026-07-15T03:00:00+08:00\n", encoding="utf-8")
    res = run_backtest(r, sample_copy, out=tmp_path / "out")
    rep = res.report
    assert rep["truth"] == "truth.csv"
    assert len(rep["scored_stations"]) == 32 and rep["unscored_stations"] == []  # a station without a row: no event
    assert rep["events"] == {"yellow": 2, "orange": 1, "red": 1}
    st = rep["rule_sets"][0]["stations"]
    assert st["WL-012"]["yellow"]["hits"] == 1  # the silent gauge's alert now warns of a real event
    assert st["WL-001"]["yellow"]["false_alarms"] == 1  # WL-001 had no event in this truth


def test_a_malformed_truth_csv_stops_before_redis_naming_the_line(r, sample_copy):
    (sample_copy / "truth.csv").write_text(
        "subject,level,start,end\n"
        "WL-003,red,2026-07-14T21:00:00+08:00,2026-07-15T02:00:00+08:00\n"
        "WL-003,crimson,2026-07-14T21:00:00+08:00,2026-07-15T02:00:00+08:00\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"truth\.csv:3: level: must be one of yellow, orange, red"):
        run_backtest(r, sample_copy)
    assert r.keys("ecd:*") == []


def test_a_rules_file_with_other_levels_is_refused(r, tmp_path):
    other = tmp_path / "amber.yaml"
    other.write_text("levels: [amber, red]\nrules:\n  - {id: s, kind: threshold, match: {kind: water_level}, "
                     "above: {amber: 20, red: 30}}\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="levels \\['amber', 'red'\\] differ from the scenario's"):
        run_backtest(r, SAMPLE, [other])


def test_the_progress_bar_names_each_rule_set():
    out = io.StringIO()  # not a terminal: a line per 10 %
    p = BacktestProgress(out, width=10)
    for i, name in enumerate(["scenario", "sensitive"]):
        for frac in (0.0, 0.05, 0.5, 1.0, 1.0):
            p.update(i, 2, name, frac)
    lines = out.getvalue().splitlines()
    assert lines[0] == "backtest [----------]   0.0%  rule set 1/2 scenario   0%"
    assert lines[-1] == "backtest [##########] 100.0%  rule set 2/2 sensitive 100%"
    assert len(lines) == len(set(lines)) == 6  # 5 % steps and repeats are not printed


# ---- the command line ------------------------------------------------------------------------------
def test_cli_backtest_exit_codes(cli_env, sample_copy, tmp_path):
    proc = cli(cli_env, SAMPLE, "--rules", SENSITIVE, "--lead-window", "3h", "--out", tmp_path / "ok")
    assert proc.returncode == 0, proc.stderr
    assert "backtested 2 rule set(s)" in proc.stdout and "lead window 3 h" in proc.stdout
    assert "rule set 2/2 rules_sensitive" in proc.stderr  # the progress bar
    rep = json.loads((tmp_path / "ok" / "backtest.json").read_text(encoding="utf-8"))
    assert rep["lead_window_min"] == 180 and [x["name"] for x in rep["rule_sets"]] == ["scenario", "rules_sensitive"]
    assert (tmp_path / "ok" / "backtest.html").stat().st_size > 1_000_000  # plotly inline

    (sample_copy / "truth.csv").write_text("subject,level,start,end\n"
                                           "WL-003,red,2026-07-14 21:00,2026-07-15T02:00:00+08:00\n")
    proc = cli(cli_env, sample_copy, "--out", tmp_path / "bad")
    assert proc.returncode == 2
    assert "truth.csv:2: start: time '2026-07-14 21:00' has no UTC offset" in proc.stderr
    assert proc.stderr.startswith("error: bad scenario: ")
    assert not (tmp_path / "bad").exists()

    proc = cli(cli_env, SAMPLE, "--rules", tmp_path / "missing.yaml", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "missing.yaml: file not found" in proc.stderr
    proc = cli(cli_env, SAMPLE, "--lead-window", "soon", "--out", tmp_path / "x")
    assert proc.returncode == 2 and "invalid duration 'soon'" in proc.stderr
