"""API tokens for other systems: made and revoked on the command line, each limited to its scopes."""

from __future__ import annotations

import re

import pytest

from command.keys import Keys
from command.scenarios.replay import run_replay
from command.trust.tokens import scope_for

from .conftest import SCENARIOS
from .test_signin import basic, cli, from_address, make_app


@pytest.fixture
def app(redis_url, tmp_path, r):
    return make_app(redis_url, tmp_path)


@pytest.fixture
def client(app):
    return app.server.test_client()

INCIDENT = {"id": "CAD-7", "time": "2026-07-01T02:00:00+08:00", "category": "trapped_people", "lat": 30.05,
            "lon": 114.05, "severity": "red"}


@pytest.fixture
def ns(r):
    return run_replay(r, SCENARIOS / "rule_threshold").namespace


def make_token(cli_env, name, *scopes, department=None):
    args = ["tokens", "add", name, *[a for s in scopes for a in ("--scope", s)]]
    if department:
        args += ["--department", department]
    out = cli(cli_env, *args).stdout
    return re.search(r"^ecd_\S+$", out, re.M).group(0)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_token_is_shown_once_and_kept_hashed(cli_env, tmp_path):
    token = make_token(cli_env, "cad", "submit_incidents")
    stored = (tmp_path / "var" / "tokens.yaml").read_text()
    assert token not in stored and "hash:" in stored
    listed = cli(cli_env, "tokens", "list").stdout
    assert "cad" in listed and "submit_incidents" in listed and token not in listed
    assert oct((tmp_path / "var" / "tokens.yaml").stat().st_mode & 0o777) == "0o600"


def test_submit_incidents_may_post_incidents_and_read_nothing(client, cli_env, ns, r):
    token = make_token(cli_env, "cad", "submit_incidents", department="fire_rescue")
    resp = client.post(f"/api/{ns}/incidents", json=INCIDENT, headers=bearer(token))
    assert resp.status_code == 201, resp.data
    import orjson

    stored = orjson.loads(r.hget(Keys(ns).incidents, "CAD-7"))
    assert stored["reported_by"] == "fire_rescue"
    for path in (f"/api/{ns}/geojson/stations", f"/api/{ns}/geojson/resources", f"/api/{ns}/alerts.atom",
                 f"/api/{ns}/tasks"):
        assert client.get(path, headers=bearer(token)).status_code == 403, path


def test_read_public_reads_what_is_published_only(client, cli_env, ns):
    token = make_token(cli_env, "gis", "read_public")
    assert client.get(f"/api/{ns}/geojson/stations", headers=bearer(token)).status_code == 200
    assert client.get(f"/api/{ns}/alerts.atom", headers=bearer(token)).status_code == 200
    assert client.get(f"/api/{ns}/geojson/resources", headers=bearer(token)).status_code == 403
    assert client.post(f"/api/{ns}/incidents", json=INCIDENT, headers=bearer(token)).status_code == 403


def test_read_internal_also_reads_the_public_layers(client, cli_env, ns):
    token = make_token(cli_env, "ops", "read_internal")
    assert client.get(f"/api/{ns}/geojson/resources", headers=bearer(token)).status_code == 200
    assert client.get(f"/api/{ns}/geojson/zones", headers=bearer(token)).status_code == 200
    assert client.post(f"/api/{ns}/incidents", json=INCIDENT, headers=bearer(token)).status_code == 403


def test_a_token_reaches_the_api_only(client, cli_env):
    token = make_token(cli_env, "gis", "read_public", "read_internal", "submit_incidents")
    assert client.get("/", headers=bearer(token)).status_code == 302
    assert client.post("/_dash-update-component", json={}, headers=bearer(token)).status_code == 401


def test_a_revoked_token_stops_working(client, cli_env, ns, r):
    token = make_token(cli_env, "gis", "read_public")
    assert client.get(f"/api/{ns}/geojson/zones", headers=bearer(token)).status_code == 200
    assert "token gis revoked" in cli(cli_env, "tokens", "revoke", "gis").stdout
    assert client.get(f"/api/{ns}/geojson/zones", headers=bearer(token)).status_code == 401
    from command.keys import LIVE
    from command.trust.audit import entries

    assert [e["action"] for e in reversed(entries(r, Keys(LIVE)))][:2] == ["token_added", "token_revoked"]


def test_bad_tokens_go_through_the_throttle(client):
    for _ in range(20):
        assert client.get("/api/live/geojson/zones", headers=bearer("ecd_guess"),
                          **from_address("203.0.113.9")).status_code == 401
    resp = client.get("/api/live/geojson/zones", headers=bearer("ecd_guess"), **from_address("203.0.113.9"))
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    # and that address cannot turn to passwords instead
    assert client.get("/api/live/geojson/zones", headers=basic(), **from_address("203.0.113.9")).status_code == 429


def test_http_basic_with_a_dashboard_user_still_works(client, ns):
    assert client.get(f"/api/{ns}/geojson/stations", headers=basic("fire")).status_code == 200


def test_tokens_add_refuses_bad_input(cli_env):
    bad = cli(cli_env, "tokens", "add", "x y", "--scope", "read_public", check=False)
    assert bad.returncode == 2
    make_token(cli_env, "cad", "submit_incidents")
    again = cli(cli_env, "tokens", "add", "cad", "--scope", "read_public", check=False)
    assert again.returncode == 2 and "revoke it first" in again.stderr
    assert cli(cli_env, "tokens", "add", "z1", "--scope", "write_all", check=False).returncode == 2


@pytest.mark.parametrize(("method", "path", "scope"), [
    ("GET", "/api/live/alerts.atom", "read_public"),
    ("GET", "/api/live/cap/abc.xml", "read_public"),
    ("GET", "/api/drill-x/geojson/stations.geojson", "read_public"),
    ("GET", "/api/live/geojson/warnings", "read_public"),
    ("GET", "/api/live/geojson/resources", "read_internal"),
    ("GET", "/api/live/tasks", "read_internal"),
    ("HEAD", "/api/live/alerts.atom", "read_public"),
    ("POST", "/api/live/incidents", "submit_incidents"),
    ("POST", "/api/live/tasks", None),
    ("DELETE", "/api/live/incidents", None),
    ("GET", "/api/live/alerts.atom/../geojson/resources", "read_internal"),
])
def test_each_request_needs_one_scope(method, path, scope):
    assert scope_for(method, path) == scope
