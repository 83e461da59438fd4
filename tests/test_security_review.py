"""Crafted requests against the exercise page's authoring (scenario uploads, the events list, the rule
set comparison), the after-action report, the map's tile route, the alert-sound preferences and a
department's reopened task, as each role and with hostile values. The real app over HTTP (requests
shaped as Dash sends them), a real Redis, files on disk. Every refusal is a 4xx or an inline message
with nothing stored, never a 500."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
import redis

from command.config import SAMPLE_DATA
from command.keys import Keys

from .conftest import SCENARIOS, module_app
from .test_access import UPDATE, callback_body, with_ns
from .test_exercise_authoring import cid, data_url, listing
from .test_upload import folder_entries, own_folder, zip_of

DEEP = "[" * 3000 + "]" * 3000  # a few kB of YAML that nests beyond the parser's recursion


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("review") / "var"


@pytest.fixture(scope="module")
def app(redis_url, data_dir):
    with module_app(data_dir, redis_url) as app:
        yield app


@pytest.fixture(scope="module")
def rr(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def clients(app):
    made: dict = {}

    def get(user):
        if user not in made:
            c = app.server.test_client()
            if user:
                assert c.post("/login", data={"username": user, "password": "flood-demo"}).status_code == 302
            made[user] = c
        return made[user]

    return get


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict:
    """A good scenario folder's files (as an archive's entries)."""
    return folder_entries(own_folder(tmp_path_factory.mktemp("review-src") / "s"))


def kept(data_dir: Path) -> list[str]:
    return [p for p in listing(data_dir / "scenarios") if not p.startswith(".")]


def upload(app, clients, entries: dict) -> tuple[int, str]:
    """The planner uploads `entries` as a zip: the answer's status and text."""
    body = callback_body(app, cid(app, "..exu-result"), {}, trigger=data_url(zip_of(entries)))
    resp = clients("planner").post(UPDATE, json=body)
    return resp.status_code, resp.get_data(as_text=True)


def refused_upload(app, clients, data_dir, entries: dict, expect: str) -> str:
    before = kept(data_dir)
    status, text = upload(app, clients, entries)
    assert status == 200, (status, text[:300])
    assert "exu-error" in text and expect in text, text[:600]
    assert str(data_dir) not in text  # no server path in the message
    assert kept(data_dir) == before and not [p for p in listing(data_dir / "scenarios") if p.startswith(".staging")]
    return text


def scenario_yaml(source: dict) -> str:
    raw = source["scenario.yaml"]
    return raw.decode() if isinstance(raw, bytes) else raw


# ---- scenario uploads ----------------------------------------------------------------------------------------
def test_an_archive_holding_a_file_and_a_folder_of_one_name_is_refused(app, clients, data_dir, source):
    refused_upload(app, clients, data_dir, {**source, "extra": "a", "extra/inside.txt": "b"},
                   "a file and a folder")


def test_an_archive_member_with_a_name_too_long_for_the_disk_is_refused(app, clients, data_dir, source):
    refused_upload(app, clients, data_dir, {**source, ("d" * 300) + "/f.txt": "b"}, "too long")
    refused_upload(app, clients, data_dir, {**source, ("f" * 300) + ".txt": "b"}, "too long")


@pytest.mark.parametrize("key", ["stations", "readings", "rules", "incidents", "rivers", "roads"])
def test_a_scenario_yaml_naming_a_folder_as_a_file_is_refused(app, clients, data_dir, source, key):
    sy = scenario_yaml(source)
    sy = "\n".join(line for line in sy.splitlines() if not line.startswith(f"{key}:")) + f"\n{key}: sub\n"
    refused_upload(app, clients, data_dir, {**source, "scenario.yaml": sy, "sub/a.txt": "x"}, "not a file")


@pytest.mark.parametrize("tick", ["0s", "1s"])
def test_a_scenario_whose_clock_would_tick_without_end_is_refused(app, clients, data_dir, source, tick):
    """`tick: 0s` would make the drill runner's list of ticks grow without end; a tick of 1 s over an
    inject a year later, tens of millions of ticks: both refused at upload with the reason."""
    sy = scenario_yaml(source) + f"\ntick: {tick}\n"
    if tick == "1s":
        sy += "injects:\n  - {at: 365d, type: resource_status, resource_id: C1, status: out_of_service}\n"
    refused_upload(app, clients, data_dir, {**source, "scenario.yaml": sy}, "tick")


def test_an_html_scenario_name_is_kept_as_text_on_the_page_and_in_the_report(app, clients, data_dir, source, rr):
    sy = scenario_yaml(source)
    sy = "\n".join(line for line in sy.splitlines() if not line.startswith("name:"))
    sy = 'name: "<img src=x onerror=alert(1)>"\n' + sy
    before = kept(data_dir)
    status, text = upload(app, clients, {**source, "scenario.yaml": sy})
    assert status == 200 and "exu-kept" in text
    (sid,) = set(kept(data_dir)) - set(before)
    assert not sid.startswith(("<", ".")) and "/" not in sid
    # the report of a namespace named after it draws the name as text
    from command.scenarios.replay import run_replay

    keys = Keys(run_replay(rr, data_dir / "scenarios" / sid).namespace)
    page = clients("planner").get(f"/exercise/report/{keys.ns}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    script_src = next(p for p in page.headers["Content-Security-Policy"].split("; ") if p.startswith("script-src"))
    assert "unsafe-inline" not in script_src


# ---- the events list -------------------------------------------------------------------------------------------
def test_deeply_nested_yaml_in_an_events_row_is_refused_inline(app, clients, data_dir):
    before = kept(data_dir)
    rows = [{"section": "injects", "at": "1h", "type": "resource_status", "fields": "{a: " + DEEP[:3990] + "}"}]
    body = callback_body(app, cid(app, "..exe-result"),
                         {("state", 0): str(SCENARIOS / "rule_zone_incident"), ("state", 1): rows})
    resp = clients("planner").post(UPDATE, json=body)
    assert resp.status_code == 200, resp.status_code
    assert "exe-error" in resp.get_data(as_text=True) and kept(data_dir) == before


@pytest.mark.parametrize("scenario", ["/etc", "../../etc", str(SAMPLE_DATA), str(SCENARIOS / "rule_zone_incident") + "/..",
                                      {"x": 1}, ["a"], "x" * 100_000])
def test_a_scenario_outside_the_lists_is_refused_by_every_authoring_callback(app, clients, data_dir, scenario):
    before = kept(data_dir), listing(data_dir / "backtests")
    client = clients("planner")
    rows = [{"section": "injects", "at": "1h", "type": "incident", "fields": "{lat: 30, lon: 114}"}]
    for prefix, values in (("..exe-grid.rowData...", {("state", 0): scenario}),
                           ("..exe-result", {("state", 0): scenario, ("state", 1): rows}),
                           ("..exb-msg", {("state", 0): scenario}),
                           ("..ex-msg", {("state", 0): scenario, ("state", 1): "60"})):
        resp = client.post(UPDATE, json=callback_body(app, cid(app, prefix), values))
        assert resp.status_code in (200, 204), (prefix, resp.status_code)
        text = resp.get_data(as_text=True)
        assert "/etc" not in text.replace(json.dumps(scenario), "")
    assert (kept(data_dir), listing(data_dir / "backtests")) == before
    assert not any(json.loads(v)["folder"] == scenario for v in redis.Redis.from_url(
        app.server.config["ECD_REDIS_URL"]).hvals("ecd:drills") if isinstance(scenario, str))


# ---- the rule set comparison ------------------------------------------------------------------------------------
def test_deeply_nested_rules_file_is_refused_inline(app, clients, data_dir):
    body = callback_body(app, cid(app, "..exb-rules-store.data..."), {("state", 0): "deep.yaml"},
                         trigger=data_url(f"levels: [yellow, orange, red]\nrules: {DEEP}\n".encode(), "application/x-yaml"))
    resp = clients("planner").post(UPDATE, json=body)
    assert resp.status_code == 200, resp.status_code
    assert "exb-rules-error" in resp.get_data(as_text=True)


def test_a_crafted_rules_store_is_checked_again_when_the_backtest_is_run(app, clients, data_dir):
    before = listing(data_dir / "backtests")
    for store in ([{"name": "deep", "text": f"levels: [yellow, orange, red]\nrules: {DEEP}\n"}],
                  [{"name": "../../x", "text": "levels: [red]\nrules: []\n"}],
                  [{"name": "bomb", "text": "a: &a [x, x]\nb: [*a, *a]\nlevels: [red]\nrules: []\n"}]):
        body = callback_body(app, cid(app, "..exb-msg"), {("state", 0): str(SAMPLE_DATA / "scenarios" / "jiangcheng_flood"),
                                                          ("state", 1): [], ("state", 2): store})
        resp = clients("planner").post(UPDATE, json=body)
        assert resp.status_code == 200, (store[0]["name"], resp.status_code)
        assert "exb-queued" not in resp.get_data(as_text=True)
    after = [p for p in listing(data_dir / "backtests") if not p.startswith(".")]
    assert after == [p for p in before if not p.startswith(".")]


def test_the_backtest_page_route_refuses_crafted_names_and_carries_the_csp(app, clients):
    client = clients("planner")
    for name in ("bt-000000000000", "bt-000000000000.html", "bt-zzzzzzzzzzzz.html", "..html", "x" * 5000):
        assert client.get(f"/exercise/backtest/{name}").status_code == 404, name
    # a path that leaves the route is the page's shell (the catch-all route), never a file from disk
    resp = client.get("/exercise/backtest/..%2f..%2f..%2fetc%2fpasswd")
    assert resp.status_code < 500 and "root:" not in resp.get_data(as_text=True)
    assert "Content-Security-Policy" in clients("planner").get("/exercise").headers


# ---- the after-action report -------------------------------------------------------------------------------------
@pytest.mark.parametrize("ns", ["drills", "..", "%2e%2e", "a" * 70, "live%0a", "x%00", "-x", "ecd:drills"])
def test_the_report_route_answers_a_crafted_namespace_404(app, clients, ns):
    resp = clients("planner").get(f"/exercise/report/{ns}")
    assert resp.status_code == 404, (ns, resp.status_code)
    # a namespace with a slash is another path: the page's shell (catch-all route), not a report
    resp = clients("planner").get("/exercise/report/..%2Fx")
    assert resp.status_code < 500 and "After-action" not in resp.get_data(as_text=True)


@pytest.mark.parametrize("user", ["fire", "water", "police", "medical", "works", "meteo", "admin", "auditor"])
def test_the_report_is_refused_to_every_role_but_planners_and_operators(app, clients, user, rr):
    from command.scenarios.replay import run_replay

    ns = run_replay(rr, SCENARIOS / "rule_threshold").namespace
    resp = clients(user).get(f"/exercise/report/{ns}")
    assert resp.status_code == 403 and "After-action" not in resp.get_data(as_text=True)


# ---- the map's tiles -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["25/0/0", "1/2/0", "1/0/2", f"{2**70}/0/0", f"3/{2**64}/0", f"0/0/{2**200}", "0/0/0"])
def test_the_tile_route_answers_crafted_coordinates_4xx(app, clients, path, tmp_path):
    from layouts.operator.basemap import MapBase

    from .test_map_basemap import make_mbtiles

    config = app.server.config
    saved = config.get("ECD_MAP_BASE")
    config["ECD_MAP_BASE"] = MapBase(kind="mbtiles", vector=False, mbtiles=make_mbtiles(tmp_path / "t.mbtiles"))
    try:
        assert clients("planner").get("/map/tiles/1/0/0").status_code == 200  # the one tile it holds
        resp = clients("planner").get(f"/map/tiles/{path}")
    finally:
        config["ECD_MAP_BASE"] = saved
    assert resp.status_code in ((204,) if path == "0/0/0" else (404,)), (path, resp.status_code)


@pytest.mark.parametrize("path", ["-1/0/0", "0/-1/0", "0/0/-1", "a/b/c", "0/0/0/../../x", "0/0/0%00"])
def test_a_tile_path_the_route_does_not_take_is_never_a_tile(app, clients, path):
    resp = clients("planner").get(f"/map/tiles/{path}")
    assert resp.status_code < 500 and not resp.mimetype.startswith("image/"), (path, resp.status_code)


@pytest.mark.parametrize("user", ["fire", "admin", "auditor", None])
def test_the_tile_route_is_for_map_readers(app, clients, user):
    resp = clients(user).get("/map/tiles/0/0/0")
    if user is None:
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login")
    else:
        assert resp.status_code == 403


# ---- preferences -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["purple", "", None, 3, ["red"], {"level": "red"}, "red" * 1000, "RED", "red\n"])
def test_a_crafted_sound_level_is_refused_inline_and_nothing_is_stored(app, clients, rr, level):
    from command.keys import preferences as prefs_key

    output = next(c for c in app.callback_map if c.startswith("..attn-prefs.children"))
    body = callback_body(app, output, {("inputs", 1): level})
    body["changedPropIds"] = ["attn-level.value"]
    before = rr.hgetall(prefs_key("planner"))
    resp = clients("planner").post(UPDATE, json=body)
    assert resp.status_code in (200, 204), resp.status_code
    if resp.status_code == 200:
        assert "attn-msg" in resp.get_data(as_text=True) and "level" in resp.get_data(as_text=True)
    assert rr.hgetall(prefs_key("planner")) == before


def test_preferences_are_the_callers_own_and_departments_have_none(app, clients, rr):
    from command.keys import preferences as prefs_key

    output = next(c for c in app.callback_map if c.startswith("..attn-prefs.children"))
    body = callback_body(app, output, {("inputs", 1): "yellow"})
    body["changedPropIds"] = ["attn-level.value"]
    operator_before = rr.hgetall(prefs_key("operator"))
    assert clients("planner").post(UPDATE, json=body).status_code == 200
    assert rr.hget(prefs_key("planner"), "level") == b"yellow"
    assert rr.hgetall(prefs_key("operator")) == operator_before
    for user in ("fire", "admin", "auditor"):
        assert clients(user).post(UPDATE, json=body).status_code == 403
        assert rr.hgetall(prefs_key(user)) == {}


# ---- a department and another's reopened task --------------------------------------------------------------------
def test_a_reopened_task_stays_its_departments_own(app, clients, rr):
    from command.models import Task
    from command.ops.dispatch import apply_verdict, dispatch, update_task
    from command.ops.verify import REOPENED, Verdict
    from command.scenarios.replay import run_replay

    keys = Keys(run_replay(rr, SCENARIOS / "rule_zone_incident").namespace)
    fp = rr.zrange(keys.alerts_open, 0, 0)[0].decode()
    level = orjson.loads(rr.get(keys.alert(fp)))["level"]
    clock = int(rr.get(keys.clock))
    d = dispatch(rr, keys, fingerprint=fp, level=level, resource_ids=["P1", "B1"], operator="operator", now=clock)
    task_id = f"{d.id}-water_authority"
    update_task(rr, keys, task_id=task_id, department="water_authority", user="water", status="completed",
                now=clock + 1, note="sandbags placed")
    task = apply_verdict(Task.model_validate_json(rr.get(keys.task(task_id))),
                         Verdict(REOPENED, "water rose 0.4 m after completion", clock + 2))
    rr.set(keys.task(task_id), task.model_dump_json())
    listing_cb = next(c for c in app.callback_map if c.startswith("..dept-tasks.children"))
    water = clients("water").post(UPDATE, json=with_ns(app, listing_cb, keys.ns)).get_data(as_text=True)
    assert "water rose 0.4 m" in water  # its own department reads why
    for user in ("fire", "police", "medical"):
        text = clients(user).post(UPDATE, json=with_ns(app, listing_cb, keys.ns)).get_data(as_text=True)
        assert "water rose" not in text and task_id not in text, user
    submit = next(c for c in app.callback_map if c.startswith("..dept-msg.children"))
    before = rr.get(keys.task(task_id))
    body = with_ns(app, submit, keys.ns, fill=task_id)
    for i, s in enumerate(app.callback_map[submit]["state"]):
        if "dept-status" in s["id"]:
            body["state"][i][0]["value"] = "completed"
    resp = clients("fire").post(UPDATE, json=body)
    assert resp.status_code == 200 and "unknown task" in resp.get_data(as_text=True)
    assert rr.get(keys.task(task_id)) == before


# ---- namespaces that do not exist ---------------------------------------------------------------------------------
def test_a_report_into_a_namespace_that_does_not_exist_writes_nothing(app, clients, rr):
    ghost = Keys("ghost-review-1")
    report = next(c for c in app.callback_map if c.startswith("..dept-inc-msg.children"))
    entry = app.callback_map[report]
    values = {}
    for i, s in enumerate(entry["state"]):
        values[("state", i)] = {"dept-inc-category": "trapped_people", "dept-inc-severity": "red",
                                "dept-inc-lat": 30.59, "dept-inc-lon": 114.30,
                                "dept-inc-description": "crafted", "ns": ghost.ns, "lang": "en"}.get(s["id"])
    from command.scenarios.namespaces import delete_namespace

    try:
        resp = clients("fire").post(UPDATE, json=callback_body(app, report, values))
        found = sorted(rr.keys(f"ecd:{{{ghost.ns}}}*") + rr.keys(f"ecd:{{{ghost.ns}:*"))
    finally:
        delete_namespace(rr, ghost)  # the other tests of the session share this Redis
    assert resp.status_code in (200, 404), resp.status_code  # an inline message, or 404 as /api/<ns>/ answers
    assert "dept-inc-ok" not in resp.get_data(as_text=True) and found == [], found


def test_a_backtest_page_is_served_under_the_apps_policy(app, clients, data_dir):
    """The full report of a backtest is a file the worker wrote from planners' input (a scenario's
    names, rule names): it is served with the app's Content-Security-Policy (no inline script runs
    that the policy does not name) and not to other roles."""
    folder = data_dir / "backtests" / "bt-0123456789ab"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "backtest.html").write_text("<html><body><script>alert(1)</script></body></html>", encoding="utf-8")
    resp = clients("planner").get("/exercise/backtest/bt-0123456789ab.html")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    script_src = next(p for p in resp.headers["Content-Security-Policy"].split("; ") if p.startswith("script-src"))
    assert "unsafe-inline" not in script_src
    for user in ("operator", "fire", "auditor", "admin"):
        assert clients(user).get("/exercise/backtest/bt-0123456789ab.html").status_code == 403


def test_a_backtest_page_allows_its_own_chart_scripts_by_hash(app, clients, data_dir):
    """Its charts are inline scripts (plotly.js and the code that draws them): allowed by their hashes,
    as the after-action report's, or the page's charts stay blank under the app's policy."""
    from command.publish.report import inline_script_hashes

    folder = data_dir / "backtests" / "bt-0123456789ac"
    folder.mkdir(parents=True, exist_ok=True)
    page = "<html><body><script>window.drawn = 1;</script></body></html>"
    (folder / "backtest.html").write_text(page, encoding="utf-8")
    resp = clients("planner").get("/exercise/backtest/bt-0123456789ac.html")
    script_src = next(p for p in resp.headers["Content-Security-Policy"].split("; ") if p.startswith("script-src"))
    (sha,) = inline_script_hashes(page)
    assert sha in script_src and "unsafe-inline" not in script_src


def test_html_in_station_names_and_incident_text_stays_text_in_the_report(app, clients, rr):
    """Names and free text come from uploads and departments' forms: in the report they are escaped
    (tables) or cannot close the charts' script (JSON), and the policy names no script of theirs."""
    from command.ops.incidents import FORM as FORM_SOURCE
    from command.ops.incidents import Actor, submit
    from command.publish.report import inline_script_hashes
    from command.scenarios.replay import run_replay

    hostile = '</script><script>alert("x")</script><img src=x onerror=alert(2)>'
    keys = Keys(run_replay(rr, SCENARIOS / "rule_threshold").namespace)
    for sid, raw in rr.hgetall(keys.stations).items():
        rr.hset(keys.stations, sid, orjson.dumps({**orjson.loads(raw), "name": hostile}))
    submit(rr, keys, {"category": "trapped_people", "severity": "red", "lat": 30.59, "lon": 114.30,
                      "description": hostile}, Actor("fire", "fire_rescue", "department"), FORM_SOURCE)
    resp = clients("operator").get(f"/exercise/report/{keys.ns}")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "<img src=x" not in page and 'alert("x")</script>' not in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    script_src = next(p for p in resp.headers["Content-Security-Policy"].split("; ") if p.startswith("script-src"))
    assert len(inline_script_hashes(page)) == 2 and all(h in script_src for h in inline_script_hashes(page))


def test_the_loader_refuses_a_tick_of_zero(tmp_path):
    from command.scenarios.load import load_scenario
    from command.scenarios.reference import ScenarioError

    folder = own_folder(tmp_path / "s")
    (folder / "scenario.yaml").write_text((folder / "scenario.yaml").read_text() + "\ntick: 0s\n")
    with pytest.raises(ScenarioError):
        load_scenario(folder)


# ---- personal data in a scenario's injects ----------------------------------------------------------------------
def test_an_injects_reporter_is_not_shown_whole_to_a_planner_not_cleared_for_it(app, clients, data_dir, source):
    """A reporter's name and phone inside an inject are secret (classification.yaml, events): a planner
    cleared internal (the demo planner) sees them masked in the events list, cannot save that list
    back (it would write the masks over the data) and cannot download the folder."""
    sy = scenario_yaml(source) + (
        "\ninjects:\n  - {at: 1h, type: incident, incident_id: INJ-9, category: trapped_people, lat: 30.02, "
        "lon: 114.02, severity: red, reporter: {name: 王小明, phone: '13800138000'}}\n")
    before = kept(data_dir)
    status, text = upload(app, clients, {**source, "scenario.yaml": sy})
    assert status == 200 and "exu-kept" in text
    (sid,) = set(kept(data_dir)) - set(before)
    folder = str(data_dir / "scenarios" / sid)
    client = clients("planner")
    shown = client.post(UPDATE, json=callback_body(app, cid(app, "..exe-grid.rowData..."), {("state", 0): folder}))
    rows = shown.get_json()["response"]["exe-grid"]["rowData"]
    listed = json.dumps(rows, ensure_ascii=False)
    assert "INJ-9" in listed and "13800138000" not in listed and "王小明" not in listed and "138****8000" in listed
    saved = client.post(UPDATE, json=callback_body(app, cid(app, "..exe-result"),
                                                   {("state", 0): folder, ("state", 1): rows}))
    assert saved.status_code == 200 and "exe-error" in saved.get_data(as_text=True)
    assert kept(data_dir) == sorted(set(before) | {sid})
    assert client.get(f"/exercise/scenario/{sid}.zip").status_code == 403


def test_a_folder_named_like_a_scenario_file_is_refused(app, clients, data_dir, source):
    """Left out of scenario.yaml, a file is found by its usual name: a folder of that name (or of
    truth.csv, which the backtest reads) is refused at upload, not met later as a server error."""
    for name in ("readings.csv", "truth.csv", "rivers.geojson"):
        entries = {k: v for k, v in source.items() if k != name}
        sy = "\n".join(line for line in scenario_yaml(source).splitlines()
                       if not line.startswith(f"{name.split('.')[0]}:"))
        refused_upload(app, clients, data_dir, {**entries, "scenario.yaml": sy, f"{name}/a.txt": "x"}, "not a file")


def test_a_kept_folder_that_cannot_be_read_is_refused_by_the_backtest_inline(app, clients, data_dir, tmp_path):
    """A folder kept before the uploads refused a truth.csv folder: the comparison says why, no 500."""
    folder = own_folder(data_dir / "scenarios" / "old-truth-000000")
    (folder / "truth.csv").mkdir()
    before = [p for p in listing(data_dir / "backtests") if not p.startswith(".")]
    try:
        body = callback_body(app, cid(app, "..exb-msg"), {("state", 0): str(folder), ("state", 1): [], ("state", 2): []})
        resp = clients("planner").post(UPDATE, json=body)
    finally:
        import shutil

        shutil.rmtree(folder)
    assert resp.status_code == 200 and "exb-error" in resp.get_data(as_text=True)
    assert [p for p in listing(data_dir / "backtests") if not p.startswith(".")] == before


@pytest.mark.parametrize("sid", ["../x", "..", "/etc", "x" * 49, "", {"a": 1}, 5, ".staging-0000"])
def test_a_crafted_id_deletes_nothing(app, clients, data_dir, source, sid):
    status, text = upload(app, clients, source)
    assert status == 200
    before = listing(data_dir / "scenarios")
    resp = clients("planner").post(UPDATE, json=callback_body(app, cid(app, "..exu-delete-msg"), fill=sid))
    assert resp.status_code in (200, 204, 400) and listing(data_dir / "scenarios") == before  # 400: not an id


# ---- the job queue ----------------------------------------------------------------------------------------------
def _run_backtest(app, clients):
    body = callback_body(app, cid(app, "..exb-msg"), {("state", 0): str(SCENARIOS / "rule_threshold"),
                                                      ("state", 1): [], ("state", 2): []})
    resp = clients("planner").post(UPDATE, json=body)
    assert resp.status_code == 200, resp.status_code
    return resp.get_data(as_text=True)


def test_backtests_queued_at_once_are_capped(app, clients, data_dir):
    """A planner queuing backtest after backtest (each up to BACKTEST_TIMEOUT_S of the backtests'
    worker) would keep the others waiting for hours: at most MAX_PENDING wait or run at once; the
    next is refused inline."""
    from rq import Queue
    from rq.job import Job

    from command.keys import RQ_BACKTEST_QUEUE
    from layouts.exercise_backtest import MAX_PENDING

    r = redis.Redis.from_url(app.server.config["ECD_REDIS_URL"])
    queue = Queue(RQ_BACKTEST_QUEUE, connection=r)
    mine: list[str] = []
    try:
        for _ in range(MAX_PENDING):
            text = _run_backtest(app, clients)
            assert "Backtest bt-" in text, text[:300]
            mine += [j for j in queue.get_job_ids() if j.startswith("bt-") and j not in mine]
        before = listing(data_dir / "backtests")
        text = _run_backtest(app, clients)
        assert "exb-error" in text and "Backtest bt-" not in text
        assert listing(data_dir / "backtests") == before
        assert len([j for j in queue.get_job_ids() if j.startswith("bt-")]) == MAX_PENDING
    finally:  # no worker here: the queued jobs must not be left to another module's worker
        for jid in mine:
            Job.fetch(jid, connection=r).delete()


def test_a_backtest_never_waits_in_front_of_an_acknowledgement_check(app, clients):
    from rq.job import Job

    from command.keys import RQ_QUEUE

    r = redis.Redis.from_url(app.server.config["ECD_REDIS_URL"])
    text = _run_backtest(app, clients)
    bid = text[text.index("Backtest bt-") + len("Backtest "):][:15]
    job = Job.fetch(bid, connection=r)
    try:
        assert job.origin != RQ_QUEUE
    finally:
        job.delete()
