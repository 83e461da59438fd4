"""`python app.py`: every process of flood command on one machine, started in order, kept up, stopped together.

It takes the data folder's lock (one copy per data folder), starts a real Redis (embedded unless
REDIS_URL is set), makes the audit key once, loads live's reference data once, then runs as child
processes the audit anchor loop, the live rule engine, the drill runner, the RQ workers (one for
acknowledgement checks, one for backtests), the live feeds
(when feeds.yaml enables any) and the web server (gunicorn on `app:create_server()`); it starts the
sample exercise and waits for the web server's /health.

Supervision (docs/operations.md): a child that stops while we run is started again after a back-off
(1 s, doubling to 30 s; a run of 10 s or more starts the doubling afresh), each stop logged with its
exit status or signal. After 5 stops within 60 s (`Settings.restart_burst`, `restart_window_s`) the
supervisor gives up on that child, says so and goes on serving, degraded (`/health` names it). The
embedded Redis is a child like the others: started again on the same port and folder, it reloads
its append-only file, and the other children reconnect. Only the web server is essential: when it
cannot be kept up there is nothing to serve, and the supervisor stops everything and exits 1.

The state of every child (pid, running / restarting / failed, restarts, last exit) is in
`<data>/app.json`, rewritten at each change; the web app's /health reads it
(command/runtime/health.py). Ctrl-C or SIGTERM stops every child (SIGTERM, SIGKILL after 10 s) and
Redis (saving), and removes app.json: no process is left behind. The exit status is 0 after a
requested stop, 1 when it stopped because of a failure. Each child also gets SIGTERM if the
supervisor itself dies (PR_SET_PDEATHSIG), so none is left orphaned.

It knows the web app and the feeds only as processes it starts (`python -m command ...`, gunicorn): it
imports nothing from layouts/ or feeds/. What it must ask of them is passed in by app.py: `prepare_web`
(make the web's session secret once, before its workers race to make it) and `feeds_enabled`.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from command.config import PROJECT_ROOT, Settings

STATE_FILE = "app.json"  # in the data folder: the supervisor's pid, address and every child's state
READY_TIMEOUT_S = 60.0  # the web server must answer /health within this long after the start
STOP_TIMEOUT_S = 10.0


class AlreadyRunning(RuntimeError):
    pass


def lock(data_dir: Path) -> IO[str]:
    """One `python app.py` per data folder: a second one says so instead of corrupting the first."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fh = open(data_dir / "app.lock", "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        info = (data_dir / STATE_FILE)
        detail = info.read_text() if info.exists() else "{}"
        raise AlreadyRunning(f"flood command is already running on this data folder ({data_dir}): {detail}") from None
    return fh


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the supervisor dies, however it dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:  # the child keeps its own copy of the descriptor
        # own session (and process group): Ctrl-C reaches only us, we stop the children in order, and a
        # dead child's leftovers (an RQ work horse, gunicorn workers) are killed with its group
        return subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=PROJECT_ROOT, start_new_session=True, preexec_fn=_die_with_parent)


def describe_exit(returncode: int) -> str:
    """`exited with status 3`, `killed by signal SIGKILL`."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"killed by signal {name}"
    return f"exited with status {returncode}"


def kill_group(pid: int) -> None:
    """SIGKILL whatever is left of a child's process group (the child leads its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@dataclass
class RestartPolicy:
    """systemd's Restart= with a growing RestartSec, and its StartLimitBurst within StartLimitIntervalSec."""

    first_s: float = 1.0  # the wait before the first restart ...
    max_s: float = 30.0  # ... doubling with each quick stop in a row, up to this
    burst: int = 5  # this many stops ...
    window_s: float = 60.0  # ... within this many seconds: give up on the child
    stable_s: float = 10.0  # a run at least this long is not a quick stop: the doubling starts afresh

    @classmethod
    def from_settings(cls, s: Settings) -> RestartPolicy:
        return cls(first_s=s.restart_first_s, max_s=s.restart_max_s, burst=s.restart_burst,
                   window_s=s.restart_window_s)

    def delay(self, quick_stops: int) -> float:
        return min(self.max_s, self.first_s * 2 ** max(quick_stops - 1, 0))


@dataclass
class Child:
    """One supervised process: how to start it, and what became of it."""

    name: str
    start: Callable[[], subprocess.Popen]
    log: Path
    essential: bool = False  # the supervisor cannot serve without it (the web server)
    proc: subprocess.Popen | None = None
    state: str = "stopped"  # running, restarting, failed, stopped
    started_at: float = 0.0  # monotonic
    since: float = field(default_factory=time.time)  # wall time of the last change of state
    restarts: int = 0
    stops: deque[float] = field(default_factory=deque)  # monotonic times of its recent stops
    quick_stops: int = 0  # stops in a row that came before `stable_s`
    next_start: float = 0.0  # monotonic
    last_exit: str | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.state == "running" else None

    def to_json(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {"pid": self.pid, "state": self.state, "restarts": self.restarts,
                               "since": round(self.since, 3), "last_exit": self.last_exit, "log": str(self.log)}
        if self.state == "restarting":
            out["restart_in_s"] = round(max(0.0, self.next_start - now), 1)
        return out


class Supervisor:
    """Starts children, notices when one stops, starts it again after a back-off or gives up on it.

    `poll()` does one round and returns True when a state changed; `say` reports (the terminal and
    logs/supervisor.log). No threads, no signals: the caller's loop drives it.
    """

    def __init__(self, children: list[Child], policy: RestartPolicy, say: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.children = children
        self.policy = policy
        self.say = say
        self.clock = clock

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def start_all(self) -> None:
        for c in self.children:
            if c.state == "stopped":
                self._launch(c, self.clock(), first=True)

    def adopt(self, c: Child, proc: subprocess.Popen) -> None:
        """A child started before supervision began (the embedded Redis)."""
        c.proc, c.state, c.started_at, c.since = proc, "running", self.clock(), time.time()

    def poll(self) -> bool:
        changed = False
        for c in self.children:
            now = self.clock()
            if c.state == "running" and c.proc is not None:
                rc = c.proc.poll()
                if rc is not None:
                    self._stopped(c, describe_exit(rc), now)
                    changed = True
            elif c.state == "restarting" and now >= c.next_start:
                self._launch(c, now)
                changed = True
        return changed

    def gave_up(self, *, essential_only: bool = False) -> list[Child]:
        return [c for c in self.children if c.state == "failed" and (c.essential or not essential_only)]

    def _launch(self, c: Child, now: float, first: bool = False) -> None:
        try:
            c.proc = c.start()
        except Exception as exc:  # noqa: BLE001 - a child that cannot even be started counts as one that stopped
            c.proc = None
            self._stopped(c, f"could not be started: {exc}", now)
            return
        c.state, c.started_at, c.since = "running", now, time.time()
        if not first:
            c.restarts += 1
            self.say(f"{c.name}: started again (pid {c.proc.pid}, restart {c.restarts})")

    def _stopped(self, c: Child, how: str, now: float) -> None:
        if c.proc is not None:
            kill_group(c.proc.pid)  # its leftovers: an RQ work horse, gunicorn workers
        ran = now - c.started_at
        c.last_exit = how
        c.quick_stops = 1 if ran >= self.policy.stable_s else c.quick_stops + 1
        c.stops.append(now)
        while c.stops and now - c.stops[0] > self.policy.window_s:
            c.stops.popleft()
        c.since = time.time()
        if len(c.stops) >= self.policy.burst:
            c.state = "failed"
            self.say(f"error: {c.name} {how}; giving up on it after {len(c.stops)} stops within "
                     f"{self.policy.window_s:g} s; see {c.log}")
            return
        delay = self.policy.delay(c.quick_stops)
        c.state, c.next_start = "restarting", now + delay
        self.say(f"error: {c.name} {how} after {ran:.1f} s; starting it again in {delay:g} s; see {c.log}")

    def stop(self, names: list[str] | None = None, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the running children (by `names`, in that order, or all), SIGKILL what is left
        after `timeout`, and their groups' leftovers. Nothing is started again afterwards."""
        chosen = [self.child(n) for n in names] if names is not None else list(self.children)
        for c in chosen:
            if c.state == "restarting":
                c.state = "stopped"
            if c.proc is not None and c.proc.poll() is None:
                c.proc.terminate()
        deadline = time.monotonic() + timeout
        for c in chosen:
            if c.proc is None:
                continue
            try:
                c.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait(5)
            kill_group(c.proc.pid)
            c.state = "stopped"


def _health(url: str) -> tuple[int, str] | None:
    """/health's status and body, or None when the web server does not answer."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own http:// address
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:  # 503: it answers, degraded
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return None


class Reporter:
    """What the supervisor says: on the terminal (errors on stderr), and with the time in logs/supervisor.log."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def __call__(self, message: str) -> None:
        print(message, file=sys.stderr if message.startswith("error") else sys.stdout, flush=True)
        with contextlib.suppress(OSError), open(self.log, "a") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {message}\n")


def write_state(path: Path, base: dict[str, Any], sup: Supervisor, status: str) -> None:
    """app.json, replaced whole (the web reads it at any moment)."""
    now = sup.clock()
    children = {c.name: c.pid for c in sup.children if c.name != "redis"}
    redis_child = next((c for c in sup.children if c.name == "redis"), None)
    doc = {**base, "status": status, "updated": round(time.time(), 3), "children": children,
           "redis_pid": redis_child.pid if redis_child is not None else None,
           "processes": {c.name: c.to_json(now) for c in sup.children}}
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)


def engine_consumer(data_dir: Path) -> str:
    """The live engine's consumer name: the same across its restarts (and app.py's), so a restarted
    engine resumes its own shards at once rather than waiting for their leases to expire; one per
    machine and data folder, so two installations sharing a Redis never share a name."""
    digest = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:8]
    return f"app-{socket.gethostname()}-{digest}"


def parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Flood command: everything on one machine")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8050")))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--workers", type=int, default=2, help="web workers (gunicorn)")
    p.add_argument("--scenario", type=Path, default=settings.default_scenario,
                   help="the sample scenario replayed as an exercise at start")
    p.add_argument("--speed", default="60", help="its replay speed: 1, 10, 60 ... or max")
    p.add_argument("--no-drill", action="store_true", help="do not start the sample exercise")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, *, prepare_web: Callable[[Settings], object] | None = None,
         feeds_enabled: Callable[[], bool] | None = None) -> int:
    settings = Settings()
    args = parse_args(argv, settings)

    from command.ops.drills import list_drills, reconcile_drills, start_drill
    from command.runtime.key_migration import rename_untagged
    from command.runtime.redis_client import RqOnCluster, rq_url
    from command.runtime.redis_client import client as redis_client
    from command.runtime.redis_server import EmbeddedRedis, RedisStartError
    from command.scenarios.namespaces import bootstrap_live
    from command.trust import audit, audit_keys

    try:
        held = lock(settings.data_dir)
    except AlreadyRunning as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    stop = {"now": False}

    def on_signal(*_):
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server = None
    sup: Supervisor | None = None
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    say = Reporter(logs / "supervisor.log")
    state_file = settings.data_dir / STATE_FILE
    try:
        url = settings.redis_url
        if not url:
            server = EmbeddedRedis(settings.redis_dir, die_with_owner=True)
            url = server.start()
        r = redis_client(url, "app", settings=settings)
        r.ping()
        rename_untagged(r)  # keys of the layout before the namespace hash tag (command/runtime/key_migration.py)
        try:  # RQ needs a plain Redis: on a cluster, ECD_RQ_REDIS_URL must name one (say so now, not at a job)
            rq_url(settings, url)
        except RqOnCluster as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        env = dict(os.environ, REDIS_URL=url, ECD_DATA_DIR=str(settings.data_dir), PYTHONUNBUFFERED="1")
        py = sys.executable
        if prepare_web is not None:
            prepare_web(settings)  # the session secret: made once here, before the web workers race to make it
        try:  # the audit key: made once here, before the children race to make it (or ECD_AUDIT_KEY checked)
            audit.configure(settings.data_dir).current()
        except audit_keys.AuditKeyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        bootstrap_live(r)  # live's rules and reference data, from the sample, the first time

        def command(name: str, *extra: str) -> Child:
            argv_ = [py, "-m", "command", *extra]
            log = logs / f"{name}.log"
            return Child(name, lambda: spawn(argv_, env, log), log)

        children: list[Child] = []
        if server is not None:
            children.append(Child("redis", server.respawn, settings.redis_dir / "redis.log"))
        # first up, last down: the anchor loop copies every audit chain's head out of Redis, up to the
        # others' last entries (command/trust/anchor.py)
        children.append(command("audit", "audit", "anchor"))
        children.append(command("engine", "engine", "--namespace", "live", "--live-ticks",
                                "--consumer", engine_consumer(settings.data_dir)))
        children.append(command("drills", "drills"))
        children.append(command("worker", "worker"))
        children.append(command("backtests", "worker", "--backtests"))
        if feeds_enabled is not None and feeds_enabled():
            children.append(command("feeds", "feeds", "run"))
        else:
            print("live feeds: none enabled in feeds.yaml (the sample exercise needs none)")
        web_argv = [py, "-m", "gunicorn", "--workers", str(args.workers), "--threads", str(settings.web_threads),
                    "--worker-class", "layouts.admission.OperatorsFirstWorker",
                    "--bind", f"{args.host}:{args.port}", "--graceful-timeout", "5",
                    "--access-logfile", "-", "app:create_server()"]
        children.append(Child("web", lambda: spawn(web_argv, env, logs / "web.log"), logs / "web.log",
                              essential=True))
        sup = Supervisor(children, RestartPolicy.from_settings(settings), say)
        if server is not None:
            assert server.proc is not None
            sup.adopt(sup.child("redis"), server.proc)
        sup.start_all()
        address = f"http://{args.host}:{args.port}"
        base = {"pid": os.getpid(), "address": address, "redis": url, "logs": str(logs)}
        write_state(state_file, base, sup, "starting")
        # a drill left running by a previous run is resumed by the drill runner, or marked interrupted
        # here when it cannot be: only then is "is a drill running?" a fair question
        for ns in reconcile_drills(r):
            say(f"exercise {ns}: interrupted by the last stop (it cannot be resumed)")
        running = [d for d in list_drills(r) if d.get("status") in ("running", "starting")]
        if not args.no_drill and not running:
            ns = start_drill(r, args.scenario, args.speed, by="system")
            print(f"exercise: replaying {args.scenario.name} at {args.speed}x in namespace {ns}")
        elif running:
            print(f"exercise: {running[0]['namespace']} goes on from where it was")

        ready_by = time.monotonic() + READY_TIMEOUT_S
        ready = False
        status = "starting"
        while not stop["now"]:
            changed = sup.poll()
            if sup.gave_up(essential_only=True):
                say(f"error: the web server cannot be kept up; stopping everything (see {logs / 'web.log'})")
                return 1
            new_status = ("ok" if ready else "starting") if not [c for c in sup.children if c.state != "running"] \
                else "degraded"
            if changed or new_status != status:
                status = new_status
                write_state(state_file, base, sup, status)
            if not ready:
                answer = _health(address + "/health")
                if answer is not None:
                    ready = True
                    print(f"Flood command is running: {address}  (sign in as 'operator', password 'flood-demo')")
                    print(f"Redis: {url}  ({'embedded, data in ' + str(settings.redis_dir) if server else 'REDIS_URL'})")
                    print(f"logs: {logs}/  ·  Ctrl-C stops everything", flush=True)
                    if answer[0] != 200:
                        say(f"health: {answer[1].strip()}")
                elif time.monotonic() > ready_by:
                    say(f"error: the web server did not answer within {READY_TIMEOUT_S:g} s; see {logs / 'web.log'}")
                    return 1
            time.sleep(0.2)
        return 0
    except RedisStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping ...", flush=True)
        if sup is not None:
            names = [c.name for c in sup.children if c.name not in ("audit", "redis")]
            sup.stop(names)
            if any(c.name == "audit" for c in sup.children):
                sup.stop(["audit"])  # its last anchor covers what the others wrote last
            if server is not None:
                sup.child("redis").state = "stopped"  # the server is stopped below, saving
        if server is not None:
            server.stop()
        state_file.unlink(missing_ok=True)
        held.close()
        print("stopped", flush=True)
