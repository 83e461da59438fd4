"""The planner's authoring on /exercise over HTTP (crafted requests shaped as Dash sends them, the real
app, a real Redis, the real RQ worker in burst mode): scenario uploads, the events list, the rule set
comparison. Only planners may; an operator or a department user is refused (403) and nothing is kept."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import pytest
import redis

from command.config import SAMPLE_DATA

from .conftest import SCENARIOS, module_app
from .test_access import UPDATE, callback_body
from .test_upload import folder_entries, own_folder, zip_of


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("authoring") / "var"


@pytest.fixture(scope="module")
def app(redis_url, data_dir):
    with module_app(data_dir, redis_url) as app:
        yield app


@pytest.fixture(scope="module")
def clients(app):
    made = {}

    def get(user):
        if user not in made:
            c = app.server.test_client()
            assert c.post("/login", data={"username": user, "password": "flood-demo"}).status_code == 302
            made[user] = c
        return made[user]

    return get


def cid(app, prefix: str) -> str:
    found = [c for c in app.callback_map if c.startswith(prefix) or c.startswith(".." + prefix)]
    assert len(found) == 1, (prefix, found)
    return found[0]


def data_url(data: bytes, mime: str = "application/zip") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def post(client, app, prefix, values, trigger=1):
    output = cid(app, prefix)
    return client.post(UPDATE, json=callback_body(app, output, values, trigger=trigger))


def answer_text(resp) -> str:
    assert resp.status_code == 200, resp.data[:300]
    return json.dumps(resp.get_json(), ensure_ascii=False)


def listing(p: Path) -> list[str]:
    return sorted(x.name for x in p.iterdir()) if p.exists() else []


# ---- who may ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("user", ["operator", "fire"])
def test_operators_and_departments_are_refused_every_authoring_callback_and_route(app, clients, data_dir, user):
    client = clients(user)
    good = zip_of(folder_entries(own_folder(data_dir.parent / f"src-{user}")))
    mine = [c for c in app.callback_map if any(f"{p}-" in c for p in ("exu", "exb", "exe"))]
    assert len(mine) >= 9
    for output in mine:
        body = callback_body(app, output)
        if output == cid(app, "exu-result"):  # a good upload: had it run, it would be kept
            body = callback_body(app, output, {("inputs", 0): data_url(good)}, trigger=data_url(good))
        resp = client.post(UPDATE, json=body)
        assert resp.status_code == 403, (output, resp.status_code)
    for url in ("/exercise/scenario/x-000000.zip", "/exercise/backtest/bt-000000000000.html"):
        assert client.get(url).status_code == 403
    assert listing(data_dir / "scenarios") == [] and listing(data_dir / "backtests") == []


# ---- uploads --------------------------------------------------------------------------------------------
def test_a_broken_zip_shows_its_file_and_line_and_keeps_nothing(app, clients, data_dir, tmp_path):
    entries = folder_entries(own_folder(tmp_path / "src"))
    entries["readings.csv"] = "time,station_id,value\n"
    text = answer_text(post(clients("planner"), app, "..exu-result", {}, trigger=data_url(zip_of(entries))))
    assert "readings.csv:1: bad header" in text and "exu-error" in text
    assert str(tmp_path) not in text and str(data_dir) not in text
    assert [p for p in listing(data_dir / "scenarios") if not p.startswith(".")] == listing(data_dir / "scenarios")
    assert all(p.startswith(("rule_zone_incident-",)) for p in listing(data_dir / "scenarios"))  # none new here
    before = listing(data_dir / "scenarios")
    text = answer_text(post(clients("planner"), app, "..exu-result", {}, trigger=data_url(b"PK\x03\x04 not a zip")))
    assert "not a zip archive" in text and listing(data_dir / "scenarios") == before


def test_a_good_zip_is_kept_shows_its_quarantine_and_can_be_downloaded_and_started(app, clients, data_dir, tmp_path):
    client = clients("planner")
    before = set(listing(data_dir / "scenarios"))
    text = answer_text(post(client, app, "..exu-result", {}, trigger=data_url(zip_of(folder_entries(own_folder(tmp_path / "s"))))))
    new = set(listing(data_dir / "scenarios")) - before
    assert len(new) == 1
    sid = new.pop()
    assert sid in text and "exu-quarantine" in text and "incidents.csv" in text
    zipped = client.get(f"/exercise/scenario/{sid}.zip")
    assert zipped.status_code == 200 and zipped.headers["Content-Type"] == "application/zip"
    assert "scenario.yaml" in {Path(n).name for n in zipfile.ZipFile(io.BytesIO(zipped.data)).namelist()}
    for crafted in ("..zip", "x.zip", f"{sid}.tar", f"{sid}%00.zip"):
        assert client.get(f"/exercise/scenario/{crafted}").status_code == 404
    # the start form offers it, and starting it registers a drill on its folder
    start = cid(app, "..ex-msg")
    folder = str(data_dir / "scenarios" / sid)
    resp = client.post(UPDATE, json=callback_body(app, start, {("state", 0): folder, ("state", 1): "max"}))
    assert "ex-started" in answer_text(resp)
    r = redis.Redis.from_url(app.server.config["ECD_REDIS_URL"])
    assert any(json.loads(v)["folder"] == folder for v in r.hvals("ecd:drills"))
    # a scenario a drill runs on is not deleted; another one is
    delete = cid(app, "..exu-delete-msg")
    text = answer_text(client.post(UPDATE, json=callback_body(app, delete, fill=sid)))
    assert "stop it first" in text and sid in listing(data_dir / "scenarios")
    before = set(listing(data_dir / "scenarios"))
    answer_text(post(client, app, "..exu-result", {}, trigger=data_url(zip_of(folder_entries(own_folder(tmp_path / "t"))))))
    (other,) = set(listing(data_dir / "scenarios")) - before
    text = answer_text(client.post(UPDATE, json=callback_body(app, delete, fill=other)))
    assert "exu-deleted" in text and other not in listing(data_dir / "scenarios")
    assert client.get(f"/exercise/scenario/{other}.zip").status_code == 404


# ---- the events list ------------------------------------------------------------------------------------
def test_the_events_list_saves_an_edited_scenario_or_says_what_is_wrong(app, clients, data_dir):
    client = clients("planner")
    load = cid(app, "..exe-grid.rowData...")
    rows = post(client, app, "..exe-grid.rowData...", {("state", 0): str(SCENARIOS / "rule_zone_incident")}).get_json()
    rows = rows["response"]["exe-grid"]["rowData"]
    assert load and rows[0]["type"] == "incident"
    before = set(listing(data_dir / "scenarios"))
    bad = rows + [{"section": "injects", "at": "1h", "type": "resource_status", "fields": "{resource_id: C1}"}]
    save = "..exe-result"
    text = answer_text(post(client, app, save, {("state", 0): str(SCENARIOS / "rule_zone_incident"), ("state", 1): bad}))
    assert "inject #2: resource_status inject is missing status" in text and set(listing(data_dir / "scenarios")) == before
    good = rows + [{"section": "injects", "at": "1h", "type": "resource_status",
                    "fields": "{resource_id: C1, status: out_of_service}"}]
    text = answer_text(post(client, app, save, {("state", 0): str(SCENARIOS / "rule_zone_incident"), ("state", 1): good}))
    assert "exe-saved" in text
    (sid,) = set(listing(data_dir / "scenarios")) - before
    assert client.get(f"/exercise/scenario/{sid}.zip").status_code == 200


# ---- the comparison -------------------------------------------------------------------------------------
def test_bad_rules_yaml_is_refused_with_the_parsers_message(app, clients, data_dir):
    client = clients("planner")
    bad = b"levels: [yellow, orange, red]\nrules:\n  - id: x\n    kind: threshold\n    for: [\n"
    text = answer_text(post(client, app, "..exb-rules-store.data...", {("state", 0): "mine.yaml"},
                            trigger=data_url(bad, "application/x-yaml")))
    assert "mine.yaml:6: invalid YAML" in text and "exb-rules-error" in text
    laughs = b"a: &a [x, x, x]\nb: [*a, *a, *a]\nlevels: [yellow, orange, red]\nrules: []\n"
    text = answer_text(post(client, app, "..exb-rules-store.data...", {("state", 0): "laughs.yaml"},
                            trigger=data_url(laughs, "application/x-yaml")))
    assert "laughs.yaml:2: YAML aliases" in text
    assert listing(data_dir / "backtests") == []


def test_two_rule_sets_compared_on_the_worker_show_the_tables_and_charts(app, clients, data_dir):
    from command.ops.jobs import run_worker

    client = clients("planner")
    sensitive = (SAMPLE_DATA / "rules_sensitive.yaml").read_text()
    run = "..exb-msg.children...exb-current.data.."
    scenario = str(SCENARIOS / "jiangcheng_flood")
    text = answer_text(post(client, app, run, {("state", 0): scenario, ("state", 1): [],
                                               ("state", 2): [{"name": "mine", "text": sensitive}]}))
    body = json.loads(text)
    bid = body["response"]["exb-current"]["data"]
    assert bid.startswith("bt-") and listing(data_dir / "backtests" / bid) == ["meta.json", "rules"]
    r = redis.Redis.from_url(app.server.config["ECD_REDIS_URL"])
    poll = "..exb-progress.children...exb-result.children...exb-recent.children.."
    text = answer_text(post(client, app, poll, {("inputs", 1): bid}))
    assert "exb-bar" in text  # queued: a progress bar
    run_worker(r, r, burst=True)
    text = answer_text(post(client, app, poll, {("inputs", 1): bid}, trigger=None))
    for level in ("yellow", "orange", "red"):
        assert f"exb-table-{level}" in text
    report = json.loads((data_dir / "backtests" / bid / "backtest.json").read_text())
    assert [rs["name"] for rs in report["rule_sets"]] == ["scenario", "mine"]
    assert "★" in text and "exb-chart" in text
    html = client.get(f"/exercise/backtest/{bid}.html")
    assert html.status_code == 200 and b"rule_sets" not in html.data[:100]
    # an uploaded scenario is backtested as a sample is
    uploaded = next(p for p in (data_dir / "scenarios").iterdir() if p.name.startswith("rule_zone_incident-"))
    text = answer_text(post(client, app, run, {("state", 0): str(uploaded), ("state", 1): [], ("state", 2): []}))
    bid2 = json.loads(text)["response"]["exb-current"]["data"]
    run_worker(r, r, burst=True)
    assert json.loads((data_dir / "backtests" / bid2 / "backtest.json").read_text())["scenario"] == "rule_zone_incident"
    # a rule set whose levels differ from the scenario's: the command line's message, nothing kept
    before = listing(data_dir / "backtests")
    other = "levels: [low, high]\nrules: []\n"
    text = answer_text(post(client, app, run, {("state", 0): scenario, ("state", 1): [],
                                               ("state", 2): [{"name": "other", "text": other}]}))
    assert "exb-error" in text and listing(data_dir / "backtests") == before
