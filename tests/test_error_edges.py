"""Errors are translated once at each edge (command/errors.py): the CLI, the engine loop, HTTP, the pages.

The engine tests use the real Redis the fixtures start: a client on a closed port stands for Redis
being away, and a method that raises `redis.ConnectionError` stands for Redis going away mid-run.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
import threading
import time

import orjson
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from command.config import Settings
from command.engine.consumer import Engine, backoff_delay
from command.errors import Conflict, InvalidInput, NotFound, Unavailable, unavailable_from
from command.keys import ENGINE_GROUP, Keys
from command.scenarios.replay import run_replay

from .conftest import ROOT, SCENARIOS
from .test_engine import alerts_of, events_by_alert


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def dead_redis() -> redis.Redis:
    """A client of a Redis that is not there, failing at once (no client-side retries)."""
    return redis.Redis(host="127.0.0.1", port=closed_port(), retry=Retry(NoBackoff(), 0), socket_connect_timeout=0.5)


def wait_until(cond, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# ---- what counts as Redis being down ---------------------------------------------------------------------
def test_redis_outages_are_unavailable_and_nothing_else_is():
    for exc in (redis.ConnectionError("refused"), redis.TimeoutError("slow"), redis.BusyLoadingError("loading")):
        err = unavailable_from(exc)
        assert isinstance(err, Unavailable) and err.retryable and err.exit_code == 75 and err.status == 503
    for exc in (redis.AuthenticationError("bad password"), redis.ResponseError("WRONGTYPE"), ValueError("x")):
        assert unavailable_from(exc) is None


def test_backoff_is_exponential_bounded_and_jittered():
    assert [backoff_delay(n, first=0.1, cap=2.0, rand=lambda: 1.0) for n in range(1, 8)] == \
        [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert backoff_delay(3, first=0.1, cap=2.0, rand=lambda: 0.0) == pytest.approx(0.2)  # half at the least
    assert backoff_delay(10_000, first=0.1, cap=2.0) <= 2.0  # no overflow, however long the outage
    assert backoff_delay(1, first=0.1, cap=2.0, retry_after=5.0) == 5.0  # never sooner than the service asks


# ---- the engine loop ----------------------------------------------------------------------------------
@pytest.fixture
def pending(r):
    """(keys, reference): a threshold scenario published, not yet evaluated, and the namespace where
    an uninterrupted engine evaluated the same."""
    ref = run_replay(r, SCENARIOS / "rule_threshold")
    res = run_replay(r, SCENARIOS / "rule_threshold", run_engine=False)
    return Keys(res.namespace), ref.namespace


def test_engine_waits_for_redis_and_then_does_its_work(r, pending):
    """Started while Redis is away: it backs off instead of crashing, and works once Redis is back."""
    keys, reference = pending
    eng = Engine(dead_redis(), keys, consumer="patient", block_ms=10, backoff=(0.01, 0.05))
    stop = threading.Event()
    started = []
    t = threading.Thread(target=eng.run, args=(stop,), kwargs={"on_start": lambda e: started.append(1)}, daemon=True)
    t.start()
    try:
        wait_until(lambda: eng.retries >= 3)
        assert t.is_alive() and not started  # still trying, never started
        eng.r = r  # Redis is back
        wait_until(lambda: eng.processed >= r.xlen(keys.shard_stream(0)))
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive() and started == [1]
    assert alerts_of(r, keys.ns) == alerts_of(r, reference)
    assert r.get(keys.shard_lease(0)) is None  # a clean stop gave the shard back


def test_engine_rides_out_redis_failing_mid_commit(r, pending, monkeypatch):
    """Redis goes away twice while batches are being committed: nothing is lost or doubled, because
    the engine forgets what it evaluated in memory and resumes from the committed state."""
    keys, reference = pending
    eng = Engine(r, keys, consumer="steady", batch=5, block_ms=10, backoff=(0.01, 0.05))
    real_commit = eng._commit
    calls = []

    def flaky_commit(*args, **kwargs):
        calls.append(1)
        if len(calls) in (2, 3):  # the second and third batches fail before anything is written
            raise redis.ConnectionError("Connection reset by peer")
        return real_commit(*args, **kwargs)

    monkeypatch.setattr(eng, "_commit", flaky_commit)
    eng.run(threading.Event(), exit_when_idle=0.5)
    assert eng.retries == 2 and len(calls) > 3
    assert alerts_of(r, keys.ns) == alerts_of(r, reference)
    assert events_by_alert(r, keys.ns) == events_by_alert(r, reference)  # no event lost or doubled
    assert r.xpending(keys.shard_stream(0), ENGINE_GROUP)["pending"] == 0


def test_engine_retries_a_retryable_domain_error_and_stops_on_any_other(r, pending, monkeypatch):
    keys, _ = pending
    eng = Engine(r, keys, consumer="picky", block_ms=10, backoff=(0.01, 0.05))
    real_poll = eng.poll
    raised = []

    def poll(*args, **kwargs):
        if not raised:
            raised.append(1)
            raise Unavailable("the forecast service is down")
        if len(raised) == 1:
            raised.append(2)
            raise Conflict("not retryable")
        return real_poll(*args, **kwargs)

    monkeypatch.setattr(eng, "poll", poll)
    with pytest.raises(Conflict):
        eng.run(threading.Event())
    assert eng.retries == 1
    assert r.get(keys.shard_lease(0)) is None  # given back on the way out

    bug = Engine(r, keys, consumer="buggy", block_ms=10)
    monkeypatch.setattr(bug, "poll", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        bug.run(threading.Event())
    assert bug.retries == 0


def test_engine_on_a_namespace_without_rules_is_not_found(r):
    with pytest.raises(NotFound, match="has no rules loaded"):
        Engine(r, Keys("nothing-here"), block_ms=10).run(threading.Event())


# ---- the CLI ------------------------------------------------------------------------------------------
def cli(env, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "command", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cli_reserved_namespace_is_bad_input_with_a_message(cli_env, tmp_path):
    proc = cli(cli_env, "replay", str(SCENARIOS / "rule_accumulation"), "--namespace", "drills", "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: invalid namespace 'drills': reserved for a global key")
    assert "Traceback" not in proc.stderr
    proc = cli(cli_env, "engine", "--namespace", "auth", "--exit-when-idle", "0.1")
    assert proc.returncode == 2 and "invalid namespace 'auth'" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_engine_on_a_namespace_without_rules(cli_env):
    proc = cli(cli_env, "engine", "--namespace", "empty-ns", "--exit-when-idle", "0.1")
    assert proc.returncode == 2 and "error: namespace 'empty-ns' has no rules loaded" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_redis_away_is_unavailable(cli_env, tmp_path):
    env = {**cli_env, "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    proc = cli(env, "export", "--namespace", "live", "--out", str(tmp_path / "out"))
    assert proc.returncode == 75, proc.stderr
    assert proc.stderr.startswith("error: Redis is unavailable") and "Traceback" not in proc.stderr


def test_cli_names_each_bad_field(capsys):
    from command.__main__ import report_error

    assert report_error(InvalidInput({"lat": "a number from -90 to 90", "category": "one of: flooding"})) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: lat: a number from -90 to 90; category: one of: flooding",
                   "  lat: a number from -90 to 90", "  category: one of: flooding"]
    assert report_error(Conflict("the alert moved on")) == 1
    assert capsys.readouterr().err == "error: the alert moved on\n"


# ---- HTTP ---------------------------------------------------------------------------------------------
@pytest.fixture
def app(redis_url, tmp_path, r):
    from app import create_app

    return create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url)


def basic(user="operator", password="flood-demo"):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_http_errors_are_the_error_json(app, r):
    ns = run_replay(r, SCENARIOS / "rule_threshold").namespace
    client = app.server.test_client()
    resp = client.get(f"/api/{ns}/geojson/rivers", headers=basic())
    assert resp.status_code == 404 and resp.get_json() == {
        "error": "not_found",
        "message": "unknown layer 'rivers' (one of stations, zones, alerts, resources, warnings, incidents)",
        "field": "layer"}
    for bad in ("no-such-ns", "drills"):
        resp = client.get(f"/api/{bad}/geojson/zones", headers=basic())
        assert resp.status_code == 404 and resp.get_json()["error"] == "not_found", bad
    resp = client.get(f"/api/{ns}/cap/nope.xml", headers=basic())
    assert resp.status_code == 404 and resp.get_json()["message"] == "no alert 'nope'"
    resp = client.post(f"/api/{ns}/incidents", data="{}", content_type="text/plain", headers=basic())
    assert resp.status_code == 400 and resp.get_json() == {
        "error": "bad_request", "message": "expected a JSON object (Content-Type: application/json)",
        "errors": {"body": "expected a JSON object (Content-Type: application/json)"}}
    resp = client.post(f"/api/{ns}/incidents", json={"lat": 91}, headers=basic())
    assert resp.status_code == 422 and {"lat", "category"} <= set(resp.get_json()["errors"])


def test_http_report_refusals_are_the_error_json(app, r):
    ns = run_replay(r, SCENARIOS / "rule_threshold").namespace
    client = app.server.test_client()
    client.post("/login", data={"username": "fire", "password": "flood-demo"})
    resp = client.get(f"/exercise/report/{ns}")
    assert resp.status_code == 403 and resp.get_json()["error"] == "forbidden"
    client.post("/login", data={"username": "planner", "password": "flood-demo"})
    assert client.get(f"/exercise/report/{ns}").status_code == 200
    resp = client.get("/exercise/report/drills")
    assert resp.status_code == 404 and resp.get_json()["message"] == "no such drill 'drills'"


def test_http_redis_away_is_503(app, monkeypatch):
    import layouts.interop as interop

    monkeypatch.setattr(interop, "rds", dead_redis)  # Redis goes away after the sign-in
    resp = app.server.test_client().get("/api/live/geojson/zones", headers=basic())
    assert resp.status_code == 503 and resp.get_json()["error"] == "unavailable"
    assert resp.get_json()["message"].startswith("Redis is unavailable")


# ---- the pages' callbacks -----------------------------------------------------------------------------
def test_department_status_form_shows_each_message_under_its_field(app, r):
    from command.ops.dispatch import dispatch
    from layouts.department import submit_status

    keys = Keys(run_replay(r, SCENARIOS / "rule_zone_incident").namespace)
    a = orjson.loads(r.get(keys.alert(r.zrange(keys.alerts_open, 0, 0)[0].decode())))
    d = dispatch(r, keys, fingerprint=a["fingerprint"], level="red", resource_ids=["B1"], operator="op", now=1)
    fire = {"username": "fire", "department": "fire_rescue", "role": "department"}
    tid = f"{d.id}-fire_rescue"
    with app.server.test_request_context("/"):
        msg, problems = submit_status(r, keys, fire, tid, "acknowledged", "", 2.5, None, None, "en")
        assert problems == {"people_assisted": "people assisted must be a whole number"}
        msg, problems = submit_status(r, keys, fire, tid, "acknowledged", "", None, 30.0, None, "en")
        assert problems == {"position": "give both latitude and longitude, or neither"}
        msg, problems = submit_status(r, keys, fire, "no-such-task", "acknowledged", "", None, None, None, "en")
        assert problems == {"": "unknown task no-such-task"}
        msg, problems = submit_status(r, keys, fire, tid, "acknowledged", "on our way", 3, None, None, "en")
        assert problems == {} and msg.id == "dept-saved"
        assert submit_status(r, keys, fire, tid, "completed", "", None, None, None, "en")[1] == {}
        msg, problems = submit_status(r, keys, fire, tid, "en_route", "", None, None, None, "en")
        assert problems == {"status": "a task that is completed cannot become en route"}
    task = orjson.loads(r.get(keys.task(tid)))
    assert task["status"] == "completed" and task["history"][0]["at"] == int(r.get(keys.clock))


def test_department_report_form_shows_a_refusal_that_is_not_about_a_field(app, r, monkeypatch):
    from command.errors import Forbidden
    from layouts import department

    keys = Keys(run_replay(r, SCENARIOS / "rule_zone_incident").namespace)

    def refuse(*_a, **_k):
        raise Forbidden("incident R-1 belongs to police", field="id")

    monkeypatch.setattr(department, "submit", refuse)
    fire = {"username": "fire", "department": "fire_rescue", "role": "department"}
    form = {"category": "flooding", "severity": "red", "lat": 30.05, "lon": 114.05, "description": "x"}
    with app.server.test_request_context("/"):
        msg, *errs = department.report_incident(r, keys, fire, form, "en")
    assert msg.children == "id: incident R-1 belongs to police" and errs == ["", "", "", "", ""]


def test_require_user_refuses_with_the_domain_errors(app):
    from command.errors import Forbidden
    from layouts.common import NotSignedIn, require_user

    with app.server.test_request_context("/"):
        with pytest.raises(NotSignedIn) as exc:
            require_user()
        assert isinstance(exc.value, Forbidden) and exc.value.status == 401
        import flask

        flask.session["user"] = {"username": "fire", "department": "fire_rescue", "role": "department"}
        with pytest.raises(Forbidden, match="role department may not do this") as exc:
            require_user("operator")
        assert exc.value.status == 403
