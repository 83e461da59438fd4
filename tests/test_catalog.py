"""The data catalogue: every dataset with its titles (en, zh), owner, source, format, frequency, grades,
last update, records and overdue flag (pure, on the namespace clock); each viewer sees what their
clearance opens; `/catalog` (bilingual page) and `GET /api/catalog` (JSON). Real Redis."""

from __future__ import annotations

import base64

import orjson
import pytest

from command.config import Settings
from command.keys import Keys
from command.ops import incidents
from command.ops.incidents import INTAKE, Actor
from command.publish.catalog import catalogue, overdue
from command.scenarios.replay import run_replay
from command.streams import StreamWriter
from command.timeutil import to_iso
from command.trust.classification import PUBLIC, Viewer, policy
from command.trust.tokens import add_token

from .conftest import SCENARIOS

MIN = 60_000
WATER = Viewer("water", "internal", "water_authority")
OPERATOR = Viewer("operator", "secret", "emergency_management")
PUBLIC_DATASETS = {"readings", "stations", "forecasts", "zones", "alerts", "warnings"}


@pytest.mark.parametrize(("last", "freq", "now", "factor", "late"), [
    (None, None, 1_000, 1.5, False),  # on event: never overdue
    (0, None, 10**12, 1.5, False),
    (None, 15 * MIN, 1_000, 1.5, True),  # expected and never came
    (0, 15 * MIN, 15 * MIN, 1.5, False),
    (0, 15 * MIN, int(22.5 * MIN), 1.5, False),  # exactly 1.5 x: still on time
    (0, 15 * MIN, int(22.5 * MIN) + 1, 1.5, True),
    (0, 15 * MIN, 16 * MIN, 1.0, True),
    (100 * MIN, 15 * MIN, 90 * MIN, 1.5, False),  # a reading from after the clock (a drill rewound)
])
def test_overdue(last, freq, now, factor, late):
    assert overdue(last, freq, now, factor) is late


@pytest.fixture
def drill(r):
    keys = Keys(run_replay(r, SCENARIOS / "rule_zone_incident").namespace)
    now = int(r.get(keys.clock))
    incidents.submit(r, keys, {"id": "CAD-9", "time": to_iso(now - MIN), "category": "trapped_people", "lat": 30.05,
                               "lon": 114.05, "reporter": {"name": "王小明", "phone": "13812348000"}},
                     Actor("operator", "emergency_management", "operator"), INTAKE)
    w = StreamWriter(r, keys, 1, record=True)  # the newest readings, as the live recorder keeps them
    for i, (sid, kind) in enumerate((("RF-A", "rainfall"), ("WL-A", "water_level"), ("WL-F", "water_level"))):
        w.reading(sid, kind, now - (10 - i) * MIN, 1.0)
    w.flush()
    return keys


def by_id(cat):
    return {d["id"]: d for d in cat["datasets"]}


def test_every_dataset_with_its_description_and_grades(r, drill):
    cat = catalogue(r, drill, OPERATOR)
    entries = by_id(cat)
    assert set(entries) == set(policy().datasets)
    for d in entries.values():
        assert d["title"]["en"] and d["title"]["zh"] and d["owner"] and d["owner_name"]["zh"]
        assert d["source"]["en"] and d["format"] and d["classification"] in ("public", "internal", "secret")
        assert set(d) >= {"frequency", "records", "last_update", "overdue", "fields"}
    inc = entries["incidents"]
    assert inc["classification"] == "internal" and inc["title"] == {"en": "Incident reports", "zh": "险情上报"}
    fields = {f["field"]: f for f in inc["fields"]}
    assert fields["reporter.phone"] == {"field": "reporter.phone", "classification": "secret",
                                        "title": {"en": "Secret", "zh": "秘密"}, "not_cleared": "phone",
                                        "you_get": "keep"}
    assert by_id(catalogue(r, drill, WATER))["incidents"]["fields"][3]["you_get"] == "mask"
    assert entries["readings"]["owner_name"] == {"en": "Water Authority", "zh": "水务局"}


def test_each_viewer_sees_the_entries_they_are_cleared_for(r, drill):
    assert set(by_id(catalogue(r, drill, PUBLIC))) == PUBLIC_DATASETS
    assert set(by_id(catalogue(r, drill, WATER))) == set(policy().datasets)
    assert catalogue(r, drill, PUBLIC)["clearance"] == "public"


def test_records_and_last_update_from_the_namespace(r, drill):
    entries = by_id(catalogue(r, drill, WATER))
    latest = [t for v in r.hvals(drill.latest) for t, _ in orjson.loads(v).values()]
    assert entries["readings"]["records"] == r.hlen(drill.latest) == 3
    assert entries["readings"]["last_update_ms"] == max(latest) == int(r.get(drill.clock)) - 8 * MIN
    assert entries["stations"]["records"] == 3 and entries["stations"]["last_update"] is None
    assert entries["alerts"]["records"] == r.zcard(drill.alerts_index) > 0
    assert entries["incidents"]["records"] == 1 and entries["incidents"]["last_update_ms"] == int(r.get(drill.clock))
    assert entries["resources"]["records"] == 8
    assert entries["audit"]["records"] == r.xlen(drill.audit) >= 1
    assert entries["events"]["records"] == r.xlen(drill.events)
    assert entries["dispatches"]["records"] == 0 and entries["tasks"]["records"] == 0
    assert entries["readings"]["last_update"].endswith("+08:00")  # the namespace's time zone


def test_overdue_is_judged_on_the_namespace_clock(r, drill):
    newest = by_id(catalogue(r, drill, WATER))["readings"]["last_update_ms"]
    r.set(drill.clock, newest + 20 * MIN)
    assert by_id(catalogue(r, drill, WATER))["readings"]["overdue"] is False
    r.set(drill.clock, newest + 23 * MIN)  # over 1.5 x 15 min of scenario time
    entries = by_id(catalogue(r, drill, WATER))
    assert entries["readings"]["overdue"] is True
    assert entries["alerts"]["overdue"] is False and entries["stations"]["overdue"] is False  # on event
    assert by_id(catalogue(r, drill, WATER, now=newest))["readings"]["overdue"] is False


def test_live_with_no_clock_yet_is_judged_on_the_wall_clock(r):
    keys = Keys("live")
    r.hset(keys.latest, "WL-1", orjson.dumps({"water_level": [1_000, 2.0]}))
    assert by_id(catalogue(r, keys, WATER))["readings"]["overdue"] is True  # 1970 is long ago


# ---- the page and the API ----------------------------------------------------------------------------------
@pytest.fixture
def app(redis_url, tmp_path, r):
    from app import create_app

    return create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url)


@pytest.fixture
def client(app):
    return app.server.test_client()


def basic(user="operator", password="flood-demo"):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def sign_in(client, user):
    assert client.post("/login", data={"username": user, "password": "flood-demo"}).status_code == 302


def test_api_catalog(client, drill, r, tmp_path):
    resp = client.get(f"/api/catalog?ns={drill.ns}", headers=basic("water"))
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["namespace"] == drill.ns and body["clearance"] == "internal"
    assert set(by_id(body)) == set(policy().datasets) and by_id(body)["incidents"]["records"] == 1
    assert client.get("/api/catalog").status_code == 401
    assert client.get("/api/catalog?ns=no-such-drill", headers=basic("water")).status_code == 404
    assert client.get("/api/catalog", headers=basic("water")).get_json()["namespace"] == "live"
    _, internal = add_token(tmp_path / "var" / "tokens.yaml", "gis", ["read_internal"])
    body = client.get(f"/api/catalog?ns={drill.ns}", headers={"Authorization": f"Bearer {internal}"}).get_json()
    assert body["clearance"] == "internal" and "incidents" in by_id(body)
    _, public = add_token(tmp_path / "var" / "tokens.yaml", "web", ["read_public"])
    assert client.get("/api/catalog", headers={"Authorization": f"Bearer {public}"}).status_code == 403


def test_catalog_page_in_english_and_chinese(client, drill):
    assert client.get("/catalog").status_code == 302  # sign in first
    sign_in(client, "water")
    en = client.get(f"/catalog?ns={drill.ns}&lang=en").get_data(as_text=True)
    assert "Data catalogue" in en and "Incident reports" in en and "险情上报" in en and "Water Authority" in en
    assert "masked for you" in en and 'data-dataset="audit"' in en and drill.ns in en
    zh = client.get(f"/catalog?ns={drill.ns}&lang=zh").get_data(as_text=True)
    assert "数据目录" in zh and "险情上报" in zh and "水务局" in zh and "对您遮盖" in zh and "内部" in zh
    assert "lang=en" in zh  # the switch back
