"""Fault drills on the real app: kill or stall one process while an exercise runs; the command centre
must answer /health at once, be healthy again within 30 s with every process back, and the exercise
must finish with exactly the alerts (and the input entries) of an undisturbed run.

One `python app.py --no-drill` (embedded Redis) serves the module; each fault gets its own drill of
the 48-hour sample scenario at 16000x (about 11 s), hit once it is under way.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import orjson
import pytest

from command.keys import Keys
from command.ops import drills
from command.ops.dispatch import dispatch, get_task
from command.scenarios.replay import run_replay

from ..conftest import SCENARIOS
from .conftest import SCENARIO, SPEED, alive, children_of, drill_status, outcome, progress, wait_for

pytestmark = pytest.mark.faults
STALL_S = 6.0


@pytest.fixture(scope="module")
def reference(app):
    """The undisturbed run: the same scenario replayed headless (the same feed and engine code)."""
    res = run_replay(app.r, SCENARIO, namespace="reference-faults")
    out = outcome(app.r, res.namespace)
    assert len(out["alerts"]) == 40
    return out


def start_exercise(app) -> str:
    ns = drills.start_drill(app.r, SCENARIO, SPEED, by="faults")
    wait_for(lambda: drill_status(app.r, ns) == "running" and progress(app.r, ns) >= 0.15, 30,
             "the exercise under way")
    return ns


def finish_and_compare(app, ns: str, reference: dict) -> None:
    wait_for(lambda: drill_status(app.r, ns) == "finished", 90, f"exercise {ns} finished")
    got = outcome(app.r, ns)
    assert got["entries"] == reference["entries"], "input lost or doubled"
    assert got["events"] == reference["events"]
    assert set(got["alerts"]) == set(reference["alerts"])
    assert got["alerts"] == reference["alerts"]


def every_child_back(app, hit: str, before: dict[str, int]) -> dict[str, int]:
    """All supervised processes running and alive, the one that was hit with a new pid."""
    def back():
        procs = app.state()["processes"]
        if any(p["state"] != "running" or not alive(p["pid"]) for p in procs.values()):
            return None
        now = {name: p["pid"] for name, p in procs.items()}
        return now if now[hit] != before[hit] else None

    return wait_for(back, 30, f"{hit} back with a new pid")


def health_answers(app) -> tuple[int, dict]:
    t0 = time.monotonic()
    code, body = app.health(timeout=2)
    assert time.monotonic() - t0 < 2.0
    assert code in (200, 503) and body["status"] in ("ok", "degraded"), body
    return code, body


@pytest.mark.parametrize("name", ["engine", "drills", "worker", "redis"])
def test_a_killed_process_is_started_again_and_the_exercise_finishes_unchanged(app, reference, name):
    ns = start_exercise(app)
    before = {n: p["pid"] for n, p in app.state()["processes"].items()}
    os.kill(before[name], signal.SIGKILL)
    health_answers(app)
    app.wait_healthy(30)
    after = every_child_back(app, name, before)
    assert {n for n in after if after[n] != before[n]} == {name}  # the others were left alone
    finish_and_compare(app, ns, reference)
    restarted = app.state()["processes"][name]
    assert restarted["restarts"] >= 1 and restarted["last_exit"] == "killed by signal SIGKILL"
    assert f"{name} killed by signal SIGKILL" in (app.data / "logs" / "supervisor.log").read_text()


def test_a_killed_web_worker_is_replaced_by_gunicorn(app, reference):
    ns = start_exercise(app)
    web = app.pid("web")
    workers = children_of(web)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    health_answers(app)
    app.wait_healthy(30)
    wait_for(lambda: len(children_of(web)) == 2 and workers[0] not in children_of(web), 30, "a new web worker")
    assert app.pid("web") == web
    finish_and_compare(app, ns, reference)


def test_a_stalled_redis_is_waited_out(app, reference):
    """SIGSTOP for 6 s: longer than the clients' 5 s timeout, so every loop sees its commands time out."""
    ns = start_exercise(app)
    before = {n: p["pid"] for n, p in app.state()["processes"].items()}
    page = httpx.Client(base_url=app.base, timeout=10)  # what an open page asks each second (assets/changes.js)
    assert page.post("/login", data={"username": "operator", "password": "flood-demo"}).status_code == 302
    assert page.get("/_changes", params={"ns": ns, "page": "map"}).status_code == 200
    os.kill(before["redis"], signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        time.sleep(0.5)
        code, body = health_answers(app)
        assert code == 503 and body["degraded"] == ["redis"] and body["redis"].startswith("unavailable")
        # the page is told within 2 s, with the time the outage began (its "data unavailable since HH:MM")
        asked = time.monotonic()
        resp = page.get("/_changes", params={"ns": ns, "page": "map"})
        assert time.monotonic() - asked < 2.0 and resp.status_code == 503, resp.text
        since = resp.json()["down_since"]
        assert time.time() * 1000 - 10_000 < since <= time.time() * 1000
        time.sleep(max(0.0, STALL_S - (time.monotonic() - t0)))
    finally:
        os.kill(before["redis"], signal.SIGCONT)
    app.wait_healthy(30)
    assert page.get("/_changes", params={"ns": ns, "page": "map"}).status_code == 200
    assert {n: p["pid"] for n, p in app.state()["processes"].items()} == before  # nobody died
    finish_and_compare(app, ns, reference)
    assert "Timeout reading from socket" in app.log("drills")  # the runner did see it, and resumed


def test_redis_refusing_writes_shows_on_health_and_nothing_dies(app, reference):
    """Memory full (maxmemory reached): a ping still answers, a write does not; /health says so."""
    ns = start_exercise(app)
    before = {n: p["pid"] for n, p in app.state()["processes"].items()}
    used = app.r.info("memory")["used_memory"]
    app.r.config_set("maxmemory", used // 2)
    try:
        code, body = wait_for(lambda: (lambda h: h if h[0] == 503 else None)(health_answers(app)), 5,
                              "/health degraded")
        assert body["degraded"] == ["redis"] and body["redis"].startswith("refuses writes"), body
        assert app.r.ping()
        time.sleep(3)  # the exercise waits; nothing dies
    finally:
        app.r.config_set("maxmemory", 0)
    app.wait_healthy(30)
    assert {n: p["pid"] for n, p in app.state()["processes"].items()} == before
    finish_and_compare(app, ns, reference)


def test_an_ack_timer_outlives_its_missing_job_and_a_dead_worker(app):
    """A dispatch committed without its RQ job ever being enqueued (the web died in between), then the
    worker killed: the task is still flagged once its deadline passes on the namespace clock."""
    res = run_replay(app.r, SCENARIOS / "rule_zone_incident")
    keys = Keys(res.namespace)
    fp = next(orjson.loads(app.r.get(keys.alert(f.decode())))["fingerprint"]
              for f in app.r.zrange(keys.alerts_open, 0, -1)
              if orjson.loads(app.r.get(keys.alert(f.decode())))["subject"] == "I4")
    now = int(app.r.get(keys.clock))
    d = dispatch(app.r, keys, fingerprint=fp, level="red", resource_ids=["B1"], operator="op", now=now,
                 ack_ms=10 * 60_000)  # and no schedule_ack_check: the job is lost
    task_id = d.task_ids[0]
    before = {n: p["pid"] for n, p in app.state()["processes"].items()}
    os.kill(before["worker"], signal.SIGKILL)
    every_child_back(app, "worker", before)
    assert get_task(app.r, keys, task_id, None).flagged is None  # not before its deadline
    app.r.set(keys.clock, now + 11 * 60_000)
    wait_for(lambda: get_task(app.r, keys, task_id, None).flagged, 10, "the task flagged")
    assert app.r.zscore(keys.ack_timers, task_id) is None  # and the timer is done
