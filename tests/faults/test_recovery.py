"""The pieces that make the fault drills pass, one by one and in-process, on the test Redis: a drill
goes on from its saved position, the ack timer is kept by the sweep, a loop client never re-sends a
command that may have run, /health's checks, and the supervisor's restart policy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import orjson
import pytest
import redis
from rq import Queue, SimpleWorker

from command.config import Settings
from command.keys import ACK_TIMER_NAMESPACES, DRILL_CURSOR, RQ_QUEUE, Keys
from command.ops import drills
from command.ops.dispatch import dispatch, get_task, update_task
from command.ops.jobs import check_acknowledgement, sweep_ack_timers
from command.runtime import health, redis_client
from command.runtime.redis_server import _redis_binary
from command.runtime.supervisor import Child, RestartPolicy, Supervisor, describe_exit, spawn
from command.scenarios.replay import run_replay

from ..conftest import SCENARIOS
from .conftest import SCENARIO, alive, free_port, outcome

MIN = 60_000


def run_until_finished(runner: drills.DrillRunner, r, ns: str, steps: int = 5000) -> None:
    for _ in range(steps):
        runner.step(block_ms=1)
        if orjson.loads(r.hget(drills.DRILLS, ns))["status"] == "finished":
            return
    raise AssertionError("the drill did not finish")


# ---- drills: resumed from the saved position -----------------------------------------------------------
def test_a_new_runner_goes_on_where_a_dead_one_stopped(r):
    reference = outcome(r, run_replay(r, SCENARIO).namespace)
    first = drills.DrillRunner(r, chunk=500)
    ns = drills.start_drill(r, SCENARIO, "max", by="planner")
    for _ in range(6):  # the start, then a few chunks published and evaluated
        first.step(block_ms=1)
    published = int(drills.drill_state(r, ns)["published"])
    assert 0 < published < first.active[ns].feed.total
    del first  # killed: nothing given back, nothing flushed beyond what was committed

    second = drills.DrillRunner(r, chunk=500)
    assert second.resume() == [ns]
    assert second.active[ns].feed.published == published  # from the saved position, not from the start
    run_until_finished(second, r, ns)
    assert outcome(r, ns) == reference


def test_a_paused_drill_is_resumed_paused_at_its_speed(r):
    first = drills.DrillRunner(r)
    ns = drills.start_drill(r, SCENARIOS / "rule_accumulation", "60", by="planner")
    first.step(block_ms=1)
    drills.send(r, "speed", ns=ns, speed="600", by="planner")
    drills.send(r, "pause", ns=ns, by="planner")
    for _ in range(3):
        first.step(block_ms=1)
    second = drills.DrillRunner(r)
    second.resume()
    d = second.active[ns]
    assert d.clock.paused and d.clock.speed == 600


def test_a_start_command_read_again_after_a_crash_starts_nothing_twice(r):
    first = drills.DrillRunner(r, chunk=500)
    ns = drills.start_drill(r, SCENARIO, "max", by="planner")
    for _ in range(4):
        first.step(block_ms=1)
    published = int(drills.drill_state(r, ns)["published"])
    r.set(DRILL_CURSOR, "0-0")  # as if it died before marking the start command handled
    second = drills.DrillRunner(r, chunk=500)
    second.resume()
    second.step(block_ms=1)  # reads the start command again: the drill is not loaded afresh
    assert int(drills.drill_state(r, ns)["published"]) >= published


def test_drills_that_cannot_be_resumed_are_marked_interrupted_before_anyone_asks(r, tmp_path):
    resumable = drills.start_drill(r, SCENARIOS / "rule_accumulation", "1", by="planner")
    drills.DrillRunner(r).step(block_ms=1)
    old = "drill-old-00000001"  # started by a version that saved no position
    gone = "drill-gone-00000002"
    for ns, folder in ((old, str(SCENARIOS / "rule_accumulation")), (gone, str(tmp_path / "deleted"))):
        r.hset(drills.DRILLS, ns, orjson.dumps({"namespace": ns, "status": "running", "folder": folder}))
    assert sorted(drills.reconcile_drills(r)) == sorted([old, gone])
    status = {d["namespace"]: d["status"] for d in drills.list_drills(r)}
    assert status == {resumable: "running", old: "interrupted", gone: "interrupted"}
    assert "saved position" in orjson.loads(r.hget(drills.DRILLS, old))["error"]


# ---- the acknowledgement timer ---------------------------------------------------------------------------
@pytest.fixture
def dispatched(r):
    res = run_replay(r, SCENARIOS / "rule_zone_incident")
    keys = Keys(res.namespace)
    fp = next(orjson.loads(r.get(keys.alert(f.decode())))["fingerprint"] for f in r.zrange(keys.alerts_open, 0, -1)
              if orjson.loads(r.get(keys.alert(f.decode())))["subject"] == "I4")
    d = dispatch(r, keys, fingerprint=fp, level="red", resource_ids=["B1"], operator="op", now=1000,
                 ack_ms=10 * MIN)
    return keys, d.task_ids[0]


def test_the_timer_is_written_with_the_dispatch_and_the_sweep_keeps_it(r, dispatched):
    keys, task_id = dispatched  # no RQ job was ever enqueued for it
    assert r.zscore(keys.ack_timers, task_id) == 1000 + 10 * MIN
    assert r.sismember(ACK_TIMER_NAMESPACES, keys.ns)
    r.set(keys.clock, 1000 + 9 * MIN)
    assert sweep_ack_timers(r) == 0 and get_task(r, keys, task_id, None).flagged is None
    r.set(keys.clock, 1000 + 10 * MIN)
    assert sweep_ack_timers(r) == 1
    assert get_task(r, keys, task_id, None).flagged == "no acknowledgement after 10 min"
    assert r.zcard(keys.ack_timers) == 0 and not r.sismember(ACK_TIMER_NAMESPACES, keys.ns)
    assert sweep_ack_timers(r) == 0  # nothing twice


def test_an_answered_task_is_not_flagged_by_the_sweep(r, dispatched):
    keys, task_id = dispatched
    update_task(r, keys, task_id=task_id, department="fire_rescue", user="fire", status="acknowledged",
                now=1000 + MIN)
    r.set(keys.clock, 1000 + 60 * MIN)
    assert sweep_ack_timers(r) == 0
    assert get_task(r, keys, task_id, None).flagged is None and r.zcard(keys.ack_timers) == 0


def test_the_rq_job_and_the_sweep_flag_once(r, dispatched):
    keys, task_id = dispatched
    r.set(keys.clock, 1000 + 11 * MIN)
    queue = Queue(RQ_QUEUE, connection=r)
    job = queue.enqueue(check_acknowledgement, keys.ns, task_id)
    SimpleWorker([queue], connection=r).work(burst=True)
    assert job.return_value() == "flagged" and r.zscore(keys.ack_timers, task_id) is None
    assert sweep_ack_timers(r) == 0
    assert [e for _, e in r.xrange(keys.status_stream) if e[b"status"] == b"flagged"].__len__() == 1


# ---- clients: a loop never re-sends what may have run ----------------------------------------------------
class _Server:
    """A redis-server in `folder` (with an AOF unless `aof` is false), on a fixed port, that a test
    stops, kills and starts again."""

    def __init__(self, folder, port: int, aof: bool = True) -> None:
        self.folder, self.port, self.aof = folder, port, aof
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc = None

    def start(self) -> None:
        self.proc = subprocess.Popen([_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "yes" if self.aof else "no", "--appendfsync", "everysec",
                                      "--dir", str(self.folder)],
                                     stdout=subprocess.DEVNULL)
        probe = redis_client.client(self.url, "probe", socket_timeout=1)
        try:
            for _ in range(200):
                try:
                    probe.ping()
                    return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    time.sleep(0.05)
            raise AssertionError("redis-server did not start")
        finally:
            probe.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def stallable(tmp_path):
    s = _Server(tmp_path, free_port(), aof=False)
    s.start()
    yield s.url, s.proc
    os.kill(s.proc.pid, signal.SIGCONT)
    s.proc.terminate()
    s.proc.wait(10)


def _incr_through_a_stall(url: str, proc, purpose: str) -> tuple[Exception | None, int]:
    """INCR while Redis is stopped for 1 s (SIGSTOP): longer than the client's 0.3 s timeout."""
    import threading

    c = redis_client.client(url, purpose, settings=Settings(redis_timeout=0.3, redis_retries=8, redis_retry_cap=0.1))
    c.ping()
    os.kill(proc.pid, signal.SIGSTOP)
    resume = threading.Timer(1.0, os.kill, (proc.pid, signal.SIGCONT))
    resume.start()
    err = None
    try:
        c.incr("n")
    except redis.RedisError as exc:
        err = exc
    finally:
        resume.join()
    time.sleep(0.3)
    n = int(redis_client.client(url, "probe", socket_timeout=2).get("n") or 0)
    c.close()
    return err, n


def test_a_loop_client_does_not_resend_a_command_that_timed_out(stallable):
    url, proc = stallable
    err, n = _incr_through_a_stall(url, proc, "loop")
    assert isinstance(err, redis.TimeoutError) and n == 1  # it ran once, when Redis came back
    assert redis_client.as_unavailable(err) is not None  # and the loop waits and resumes on it


def test_an_app_client_resends_after_a_timeout_which_can_double_a_write(stallable):
    url, proc = stallable
    _, n = _incr_through_a_stall(url, proc, "app")
    assert n >= 2  # every copy ran: why the loops do not use it


def test_a_loop_client_waits_for_a_server_that_is_not_there_yet(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    c = redis_client.client(url, "loop", settings=Settings(redis_retries=20, redis_retry_cap=0.2))

    def start_later():
        time.sleep(0.8)
        return subprocess.Popen([_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)

    import threading

    box = {}
    t = threading.Thread(target=lambda: box.update(proc=start_later()))
    t.start()
    try:
        assert c.incr("n") == 1  # refused connections were retried: they cannot have run anything
    finally:
        t.join()
        box["proc"].terminate()
        box["proc"].wait(10)
        c.close()


# ---- a restarted Redis that lost its last writes ---------------------------------------------------------
@pytest.fixture
def server(tmp_path):
    s = _Server(tmp_path, free_port())
    s.start()
    yield s
    if s.proc.poll() is None:
        s.proc.terminate()
        s.proc.wait(10)


def test_a_loop_client_refuses_once_to_go_on_with_a_restarted_server(server):
    loop = redis_client.client(server.url, "loop", settings=Settings(redis_retries=20, redis_retry_cap=0.2))
    app = redis_client.client(server.url, "app", settings=Settings(redis_retries=20, redis_retry_cap=0.2))
    assert loop.incr("n") == 1 and app.incr("n") == 2
    loop.client_kill_filter(_id=None, skipme=False, _type="normal")  # every connection dropped, same server
    assert loop.incr("n") == 3  # reconnected to the same server: nothing lost, nothing to say
    server.kill()
    server.start()  # its AOF has n = 3 (or less, had it lost a write)
    with pytest.raises(redis_client.ServerRestarted) as err:
        loop.incr("n")
    assert redis_client.as_unavailable(err.value) is not None  # the loop waits and resumes on it
    assert not redis_client._never_sent(err.value)  # never retried by the client itself
    assert int(loop.get("n")) == 3  # then it is let through: the command above never ran
    assert app.incr("n") == 4  # the web app's client just reconnects: it holds nothing in memory
    loop.close()
    app.close()


class _HeldRunner(drills.DrillRunner):
    """A drill runner a test can hold between two steps (no command in flight, its connection idle)."""

    def __init__(self, *args, **kwargs) -> None:
        import threading

        super().__init__(*args, **kwargs)
        self.hold, self.held = threading.Event(), threading.Event()

    def step(self, block_ms: int = 100) -> None:
        if self.hold.is_set():
            self.held.set()
            while self.hold.is_set():
                time.sleep(0.01)
        super().step(block_ms)


def test_a_drill_goes_on_from_what_a_restarted_redis_holds_when_it_lost_writes(r, server):
    """Redis killed and started again from an AOF that ends before the drill's last writes (as
    `appendfsync everysec` allows), while the drill runner sat between two steps: its next command
    reconnects at once, to a server behind what the runner holds in memory. It must resume from what
    the server holds, not carry on from memory; the drill ends as an undisturbed run."""
    import shutil
    import threading

    reference = outcome(r, run_replay(r, SCENARIO).namespace)
    data = redis_client.client(server.url, "app")
    runner = _HeldRunner(redis_client.client(server.url, "loop"), chunk=200, backoff=(0.1, 0.5))
    stop = threading.Event()
    loop = threading.Thread(target=runner.run, args=(stop,), daemon=True)
    loop.start()
    try:
        ns = drills.start_drill(data, SCENARIO, "16000", by="planner")
        aof = server.folder / "appendonly.aof"

        def published() -> int:
            return int(drills.drill_state(data, ns).get("published", 0))

        total = None
        deadline = time.monotonic() + 30
        while not total or published() < total * 0.2:
            assert time.monotonic() < deadline
            total = int(drills.drill_state(data, ns).get("total", 0))
            time.sleep(0.02)
        data.bgrewriteaof()  # one self-contained file, copied as the server stands now
        while data.info("persistence")["aof_rewrite_in_progress"]:
            time.sleep(0.02)
        time.sleep(1.2)  # written and fsynced (everysec)
        shutil.copy(aof, server.folder / "older.aof")
        at_copy = published()
        while published() < min(at_copy + total * 0.2, total * 0.9):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        runner.hold.set()
        assert runner.held.wait(10)
        ahead = runner.active[ns].feed.published
        server.kill()
        shutil.copy(server.folder / "older.aof", aof)  # the writes since the copy are lost
        server.start()
        assert published() <= at_copy + total * 0.05 < ahead  # the server is behind the runner's memory
        runner.hold.clear()
        deadline = time.monotonic() + 60
        while orjson.loads(data.hget(drills.DRILLS, ns))["status"] != "finished":
            assert time.monotonic() < deadline, "the drill did not finish"
            time.sleep(0.1)
        got = outcome(data, ns)
        assert got["entries"] == reference["entries"], "input lost or doubled"
        assert got == reference
        assert runner.retries == 1  # told once, by the client's fence, and resumed
    finally:
        runner.hold.clear()
        stop.set()
        loop.join(10)
        data.close()


def test_errors_that_mean_wait_and_those_that_mean_a_bug():
    assert redis_client.trouble(redis.ConnectionError("Error 111 connecting to x:1. Connection refused."))
    assert redis_client.trouble(redis.TimeoutError("Timeout reading from socket"))
    assert redis_client.trouble(redis.BusyLoadingError("Redis is loading the dataset in memory")).startswith(
        "Redis is loading")
    assert redis_client.trouble(redis.exceptions.OutOfMemoryError("command not allowed")).startswith(
        "Redis refuses writes")
    assert redis_client.trouble(redis.ResponseError("MISCONF Redis is configured to save RDB snapshots"))
    assert redis_client.trouble(redis.ResponseError("WRONGTYPE Operation against a key")) is None
    assert redis_client.trouble(redis.AuthenticationError("invalid password")) is None
    assert redis_client._never_sent(redis.ConnectionError("Error 111 connecting to x:1. Connection refused."))
    assert redis_client._never_sent(redis.BusyLoadingError("loading"))
    assert not redis_client._never_sent(redis.TimeoutError("Timeout reading from socket"))
    assert not redis_client._never_sent(redis.ConnectionError("Connection closed by server."))


# ---- /health's checks -----------------------------------------------------------------------------------
def test_health_writes_to_redis_and_reads_the_supervisors_state(r, redis_url, tmp_path):
    probe = redis_client.client(redis_url, "probe")
    assert health.check(probe, tmp_path) == ({"status": "ok", "redis": "ok"}, 200)
    r.config_set("maxmemory", 1)
    try:
        body, code = health.check(probe, None)
        assert code == 503 and body["degraded"] == ["redis"] and body["redis"].startswith("refuses writes")
        assert probe.ping()  # a ping alone would have said all is well
    finally:
        r.config_set("maxmemory", 0)
    dead = redis_client.client(f"redis://127.0.0.1:{free_port()}/0", "probe")
    body, code = health.check(dead, None)
    assert code == 503 and body["redis"].startswith("unavailable")

    state = {"pid": os.getpid(), "processes": {
        "engine": {"pid": 1, "state": "running"},
        "drills": {"pid": None, "state": "restarting", "last_exit": "killed by signal SIGKILL", "restarts": 1,
                   "restart_in_s": 1.5},
        "worker": {"pid": None, "state": "failed", "last_exit": "exited with status 1", "log": "w.log"}}}
    (tmp_path / "app.json").write_text(json.dumps(state))
    body, code = health.check(probe, tmp_path)
    assert code == 503 and body["degraded"] == ["drills", "worker"]
    assert body["processes"]["drills"].startswith("restarting: killed by signal SIGKILL")
    assert body["processes"]["worker"].startswith("failed:") and body["processes"]["engine"] == "ok"
    state["pid"] = 2 ** 22 + 7  # no such process: the supervisor is gone
    state["processes"] = {}
    (tmp_path / "app.json").write_text(json.dumps(state))
    body, code = health.check(probe, tmp_path)
    assert code == 503 and body["degraded"] == ["supervisor"]


# ---- the supervisor's policy -------------------------------------------------------------------------
def test_restart_delays_double_up_to_the_cap():
    p = RestartPolicy()
    assert [p.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert describe_exit(-9) == "killed by signal SIGKILL" and describe_exit(3) == "exited with status 3"


def _child(tmp_path, name: str, code: str) -> Child:
    log = tmp_path / f"{name}.log"
    return Child(name, lambda: spawn([sys.executable, "-c", code], dict(os.environ), log), log)


def _run(sup: Supervisor, until, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sup.poll()
        if until():
            return
        time.sleep(0.02)
    raise AssertionError("the supervisor never got there")


def test_a_child_that_keeps_failing_is_given_up_on_and_the_others_stay(tmp_path):
    said: list[str] = []
    crashing = _child(tmp_path, "crashing", "import sys; sys.exit(3)")
    steady = _child(tmp_path, "steady", "import time; time.sleep(60)")
    sup = Supervisor([crashing, steady], RestartPolicy(first_s=0.05, max_s=0.2, burst=4, window_s=30), said.append)
    sup.start_all()
    try:
        _run(sup, lambda: crashing.state == "failed")
        assert crashing.restarts == 3 and crashing.last_exit == "exited with status 3"
        assert steady.state == "running" and alive(steady.proc.pid) and steady.restarts == 0
        assert sum("crashing exited with status 3" in m for m in said) == 4
        assert "giving up on it after 4 stops within 30 s" in said[-1]
        assert sup.gave_up() == [crashing] and sup.gave_up(essential_only=True) == []
    finally:
        sup.stop()
    assert steady.state == "stopped" and not alive(steady.proc.pid)


def test_a_killed_child_is_started_again_with_its_leftovers_killed(tmp_path):
    # the child starts a grandchild in its own process group (like an RQ work horse) and prints its pid
    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            "print(p.pid, flush=True); time.sleep(60)")
    said: list[str] = []
    c = _child(tmp_path, "worker", code)
    sup = Supervisor([c], RestartPolicy(first_s=0.1), said.append)
    sup.start_all()
    try:
        first = c.proc.pid
        grandchild = int(_wait_line(c.log))
        os.kill(first, signal.SIGKILL)
        _run(sup, lambda: c.state == "running" and c.proc.pid != first)
        assert "worker killed by signal SIGKILL" in said[0] and c.restarts == 1
        deadline = time.monotonic() + 5
        while alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(grandchild)  # the dead child's group went with it
    finally:
        sup.stop()


def _wait_line(path, within: float = 10.0) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        text = path.read_text() if path.exists() else ""
        if text.strip():
            return text.split()[0]
        time.sleep(0.05)
    raise AssertionError(f"nothing in {path}")
