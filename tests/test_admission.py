"""Operators first (layouts/admission.py): a worker's requests take turns, the operators' before the rest."""

from __future__ import annotations

import re
import threading
import time

import pytest

from layouts.admission import FIRST, REST, PriorityGate, priority_of


def _start(gate: PriorityGate, priority: int, order: list[str], name: str, hold: float = 0.0) -> threading.Thread:
    def run() -> None:
        gate.acquire(priority)
        order.append(name)
        time.sleep(hold)
        gate.release()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _wait_queued(gate: PriorityGate, n: int) -> None:
    deadline = time.monotonic() + 5
    while gate.queued < n:
        assert time.monotonic() < deadline, f"{gate.queued} waiting, expected {n}"
        time.sleep(0.005)


def test_an_operator_waiting_behind_phones_goes_before_them():
    gate = PriorityGate(1)
    gate.acquire(REST)  # the worker is busy
    order: list[str] = []
    threads = [_start(gate, REST, order, f"phone-{i}") for i in range(3)]
    _wait_queued(gate, 3)
    threads.append(_start(gate, FIRST, order, "operator"))
    _wait_queued(gate, 4)
    threads.append(_start(gate, REST, order, "phone-3"))
    _wait_queued(gate, 5)
    gate.release()
    for t in threads:
        t.join(5)
    assert order == ["operator", "phone-0", "phone-1", "phone-2", "phone-3"]  # then in arrival order
    assert gate.waited == [1, 4] and gate.queued == 0


def test_no_more_than_its_slots_work_at_once_and_every_waiter_gets_its_turn():
    gate = PriorityGate(2)
    inside, peak, lock = [0], [0], threading.Lock()

    def run(priority: int) -> None:
        gate.acquire(priority)
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        time.sleep(0.002)
        with lock:
            inside[0] -= 1
        gate.release()

    threads = [threading.Thread(target=run, args=(i % 3 == 0 and FIRST or REST,)) for i in range(60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] == 2 and inside[0] == 0 and gate.queued == 0
    gate.acquire(REST)  # both slots are free again: neither call waits
    gate.acquire(REST)
    assert gate.queued == 0


def test_a_gate_needs_a_slot_and_only_operators_go_first():
    with pytest.raises(ValueError):
        PriorityGate(0)
    assert priority_of({"role": "operator"}) == FIRST
    for role in ("department", "planner", "admin", "auditor"):
        assert priority_of({"role": role}) == REST
    assert priority_of(None) == REST


@pytest.fixture
def app(redis_url, tmp_path, r):
    from app import create_app
    from command.config import Settings

    return create_app(Settings(data_dir=tmp_path / "var"), redis_url=redis_url)


def _sid(client) -> str:
    cookie = client.get_cookie("ecd_session")
    assert cookie is not None
    return cookie.value


def test_operators_sessions_go_first_and_no_one_elses_or_a_crafted_cookie(app):
    """The worker learns from the sign-in gate which session ids are operators'; a department's, a
    planner's, an unknown or a malformed cookie waits with everyone else."""
    from tests.test_changes import client_as

    admission = app.server.extensions["ecd_admission"]
    operator, fire, planner = (client_as(app, u) for u in ("operator", "fire", "planner"))
    for c in (operator, fire, planner):
        assert c.get("/_changes", query_string={"ns": "live", "page": ""}).status_code == 200
    env = lambda cookie: {"HTTP_COOKIE": cookie}  # noqa: E731
    assert admission.priority(env(f"lang=en; ecd_session={_sid(operator)}")) == FIRST
    assert admission.priority(env(f"ecd_session={_sid(fire)}")) == REST
    assert admission.priority(env(f"ecd_session={_sid(planner)}")) == REST
    assert admission.priority(env("ecd_session=" + "A" * 43)) == REST  # well-formed, never signed in
    assert admission.priority(env(f"ecd_session={_sid(operator)}x")) == REST  # malformed
    assert admission.priority(env(f"xecd_session={_sid(operator)}")) == REST  # another cookie's name
    assert admission.priority({}) == REST


def test_every_request_takes_a_turn_and_gives_it_back_and_says_its_times(app):
    """Each answer carries Server-Timing (the worker's time, the wait for its turn); whatever the
    answer (401, 403, 400, 200), the turn is given back; /health and static files take none."""
    from tests.test_changes import client_as

    server = app.server
    gate: PriorityGate = server.extensions["ecd_admission"].gate
    assert gate.slots == 2  # ECD_WEB_SLOTS' default
    anonymous = server.test_client()
    resp = anonymous.get("/_changes?ns=live&page=map")
    assert resp.status_code == 401 and re.fullmatch(r"app;dur=[0-9.]+, queue;dur=[0-9.]+",
                                                    resp.headers["Server-Timing"])
    health = anonymous.get("/health")
    assert "queue" not in health.headers["Server-Timing"]
    operator = client_as(app, "operator")
    for page in ("map", "department", "no-such-page", "audit"):
        operator.get("/_changes", query_string={"ns": "live", "page": page})
    crafted = operator.post("/_dash-update-component", data=b"{not json", headers={"Content-Type": "application/json"})
    assert crafted.status_code == 400
    gate.acquire(REST)  # every turn was given back: both slots are free, neither call waits
    gate.acquire(REST)
    assert gate.queued == 0 and gate.waited == [0, 0]
    gate.release()
    gate.release()


def test_the_worker_pool_runs_an_operators_request_before_the_waiting_phones_and_shuts_down():
    """OperatorsFirstWorker's thread pool: with its threads busy, an operator's connection waiting
    behind phones' is served first; failures reach the caller's future; shutdown cancels what waits."""
    from layouts.admission import OperatorsFirstWorker, PriorityPool

    assert OperatorsFirstWorker.get_thread_pool.__qualname__ == "OperatorsFirstWorker.get_thread_pool"
    pool = PriorityPool(1)
    release, started = threading.Event(), threading.Event()
    busy = pool.submit(lambda: started.set() or release.wait())
    assert started.wait(5)  # its one thread is busy
    order: list[str] = []
    waiting = [pool.submit(order.append, f"phone-{i}") for i in range(3)]
    waiting.append(pool.submit(order.append, "operator", priority=FIRST))
    failing = pool.submit(lambda: 1 / 0)
    assert pool.queued == 5
    release.set()
    for f in (busy, *waiting):
        f.result(5)
    with pytest.raises(ZeroDivisionError):
        failing.result(5)
    assert order == ["operator", "phone-0", "phone-1", "phone-2"]
    stuck, started = threading.Event(), threading.Event()
    pool.submit(lambda: started.set() or stuck.wait())
    assert started.wait(5)
    left = pool.submit(order.append, "never")
    pool.shutdown(wait=False)
    assert left.cancelled()
    stuck.set()
    with pytest.raises(RuntimeError):
        pool.submit(order.append, "after")
    assert "never" not in order


def test_a_connection_goes_first_for_a_thread_when_its_last_request_was_an_operators():
    """The worker pool ranks gunicorn's `handle(conn)` by what the admission recorded for the
    connection's socket (a real socket pair: what gunicorn hands the app as `gunicorn.socket`)."""
    import socket
    from types import SimpleNamespace

    from layouts.admission import CONN_PRIORITY, PriorityPool, connection_rank

    a, b = socket.socketpair()
    with a, b:
        conn = SimpleNamespace(sock=a)
        assert connection_rank((conn,)) == REST  # a new connection: nothing known yet
        CONN_PRIORITY[a] = FIRST
        assert connection_rank((conn,)) == FIRST
        assert connection_rank((SimpleNamespace(sock=b),)) == REST and connection_rank(()) == REST
        pool = PriorityPool(1, rank=connection_rank)
        release, started = threading.Event(), threading.Event()
        pool.submit(lambda: started.set() or release.wait())
        assert started.wait(5)
        order: list[str] = []
        later = [pool.submit(lambda c: order.append("phone"), SimpleNamespace(sock=b)),
                 pool.submit(lambda c: order.append("operator"), conn)]
        release.set()
        for f in later:
            f.result(5)
        assert order == ["operator", "phone"]
        pool.shutdown()


def test_a_request_body_is_read_before_the_request_waits_for_its_turn():
    """The turns are for work: a body (of a length the app accepts) is read in first, so a slow sender
    holds a thread, never one of the worker's few turns; a too-large declared body is left to the app
    (413) unread."""
    import io

    from layouts.admission import Admission

    seen: list[bytes] = []

    def app(environ, start_response):
        seen.append(environ["wsgi.input"].read())
        start_response("200 OK", [])
        return [b"ok"]

    admission = Admission(app, 1, "ecd_session")
    admission.gate.acquire(REST)  # the worker's one turn is taken
    body = io.BytesIO(b'{"output": "x"}')
    environ = {"PATH_INFO": "/_dash-update-component", "CONTENT_LENGTH": str(len(body.getvalue())),
               "wsgi.input": body}
    headers: list = []
    t = threading.Thread(target=lambda: admission(environ, lambda status, h, exc=None: headers.extend(h)))
    t.start()
    _wait_queued(admission.gate, 1)
    assert body.tell() == len(body.getvalue())  # read while waiting
    admission.gate.release()
    t.join(5)
    assert seen == [b'{"output": "x"}'] and dict(headers)["Server-Timing"].startswith("app;dur=")
    big = io.BytesIO(b"x")
    environ = {"PATH_INFO": "/login", "CONTENT_LENGTH": str(10 * 1024 * 1024), "wsgi.input": big}
    admission(environ, lambda status, h, exc=None: None)
    assert seen[-1] == b"x" and admission.gate.queued == 0  # handed on as it came


def test_long_work_has_a_lane_of_its_own():
    """A long request (`long_work`) takes the worker's one long turn, not one of the shared turns: with
    the one shared turn's worth of work free and a report being drawn, a console's request gets through
    at once; a second report waits until the first one is drawn."""
    from werkzeug.routing import Map, Rule

    from layouts.admission import Admission

    drawing, finish = threading.Event(), threading.Event()

    def app(environ, start_response):
        start_response("200 OK", [])
        if environ["PATH_INFO"].startswith("/report/"):
            drawing.set()
            finish.wait(5)  # a report being drawn
            return [b"report"]
        return [b"map"]

    admission = Admission(app, slots=1, cookie="s", long_routes=lambda: Map([Rule("/report/<ns>")]))
    env = lambda path: {"PATH_INFO": path, "REQUEST_METHOD": "GET"}  # noqa: E731
    start = lambda status, headers, exc_info=None: None  # noqa: E731

    def ask(path: str, into: list) -> threading.Thread:
        t = threading.Thread(target=lambda: into.extend(admission(env(path), start)), daemon=True)
        t.start()
        return t

    first: list[bytes] = []
    drawer = ask("/report/a", first)
    assert drawing.wait(5)
    console: list[bytes] = []
    ask("/map", console).join(5)
    assert console == [b"map"] and admission.gate.queued == 0  # the shared turn was free all along
    second: list[bytes] = []
    waiter = ask("/report/b", second)
    _wait_queued(admission.long_gate, 1)  # one report at a time
    finish.set()
    drawer.join(5)
    waiter.join(5)
    assert first == second == [b"report"]
    admission.long_gate.acquire(REST)  # given back: taken at once
    assert admission.long_gate.queued == 0
    assert not admission.is_long(env("/map")) and not admission.is_long(env("/report/a/b"))


def test_the_apps_long_route_is_the_after_action_report_and_it_gives_its_turn_back(app, r):
    from tests.test_changes import client_as

    admission = app.server.extensions["ecd_admission"]
    env = lambda path, method="GET": {"PATH_INFO": path, "REQUEST_METHOD": method}  # noqa: E731
    assert admission.is_long(env("/exercise/report/drill-x"))
    for path, method in (("/_dash-update-component", "POST"), ("/_changes", "GET"), ("/", "GET"),
                         ("/exercise/report/a/b", "GET"), ("/exercise/report/x", "POST"),
                         ("/audit/export.csv", "GET"), ("/map/tiles/1/2/3", "GET")):
        assert not admission.is_long(env(path, method)), path
    planner = client_as(app, "planner")
    resp = planner.get("/exercise/report/no-such-drill")
    assert resp.status_code == 404 and "queue;dur=" in resp.headers["Server-Timing"]
    assert client_as(app, "fire").get("/exercise/report/no-such-drill").status_code == 403
    admission.long_gate.acquire(REST)  # both turns given back: taken at once
    assert admission.long_gate.queued == 0
    admission.long_gate.release()
