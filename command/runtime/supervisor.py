"""`python app.py`: every process of flood command on one machine, started in order and stopped together.

It takes the data folder's lock (one copy per data folder), starts a real Redis (embedded unless
REDIS_URL is set), makes the audit key once, loads live's reference data once, then runs as child
processes the audit anchor loop, the live rule engine, the drill runner, the RQ worker, the live feeds
(when feeds.yaml enables any) and the web server
(gunicorn on `app:create_server()`); it starts the sample exercise, waits for the web server's /health,
and stops every child on Ctrl-C or SIGTERM, or when one of them stops, leaving no process behind.

It knows the web app and the feeds only as processes it starts (`python -m command ...`, gunicorn): it
imports nothing from layouts/ or feeds/. What it must ask of them is passed in by app.py: `prepare_web`
(make the web's session secret once, before its workers race to make it) and `feeds_enabled`.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from command.config import PROJECT_ROOT, Settings

Procs = list[tuple[str, subprocess.Popen]]


class AlreadyRunning(RuntimeError):
    pass


def lock(data_dir: Path) -> IO[str]:
    """One `python app.py` per data folder: a second one says so instead of corrupting the first."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fh = open(data_dir / "app.lock", "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        info = (data_dir / "app.json")
        detail = info.read_text() if info.exists() else "{}"
        raise AlreadyRunning(f"flood command is already running on this data folder ({data_dir}): {detail}") from None
    return fh


def spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = open(log, "ab")  # noqa: SIM115 - the child keeps it
    # own session: Ctrl-C reaches only us, and we stop the children in order
    return subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=PROJECT_ROOT, start_new_session=True)


def stop_all(procs: Procs, timeout: float = 10.0) -> None:
    for _, p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + timeout
    for _, p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def wait_http(url: str, procs: Procs, timeout: float) -> bool:
    """Until `url` answers 200 (True), a child stops or the time is up (False)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for _, p in procs):
            return False
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


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

    from command.ops.drills import list_drills, start_drill
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
    procs: Procs = []
    try:
        url = settings.redis_url
        if not url:
            server = EmbeddedRedis(settings.redis_dir)
            url = server.start()
        import redis

        r = redis.Redis.from_url(url)
        r.ping()
        logs = settings.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
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
        # first up, last down: the anchor loop copies every audit chain's head out of Redis, up to the
        # others' last entries (command/trust/anchor.py)
        procs.append(("audit", spawn([py, "-m", "command", "audit", "anchor"], env, logs / "audit.log")))
        procs.append(("engine", spawn([py, "-m", "command", "engine", "--namespace", "live", "--live-ticks"], env,
                                      logs / "engine.log")))
        procs.append(("drills", spawn([py, "-m", "command", "drills"], env, logs / "drills.log")))
        procs.append(("worker", spawn([py, "-m", "command", "worker"], env, logs / "worker.log")))
        if feeds_enabled is not None and feeds_enabled():
            procs.append(("feeds", spawn([py, "-m", "command", "feeds", "run"], env, logs / "feeds.log")))
        else:
            print("live feeds: none enabled in feeds.yaml (the sample exercise needs none)")
        procs.append(("web", spawn([py, "-m", "gunicorn", "--workers", str(args.workers), "--threads", "4",
                                    "--bind", f"{args.host}:{args.port}", "--graceful-timeout", "5",
                                    "--access-logfile", "-", "app:create_server()"], env, logs / "web.log")))
        address = f"http://{args.host}:{args.port}"
        (settings.data_dir / "app.json").write_text(json.dumps({
            "pid": os.getpid(), "address": address, "redis": url,
            "children": {name: p.pid for name, p in procs},
            "redis_pid": server.proc.pid if server is not None and server.proc is not None else None}))
        if not args.no_drill and not any(d.get("status") in ("running", "starting") for d in list_drills(r)):
            ns = start_drill(r, args.scenario, args.speed, by="system")
            print(f"exercise: replaying {args.scenario.name} at {args.speed}x in namespace {ns}")
        if not wait_http(address + "/health", procs, 30):
            print(f"error: the web server did not start; see {logs / 'web.log'}", file=sys.stderr)
            return 1
        print(f"Flood command is running: {address}  (sign in as 'operator', password 'flood-demo')")
        print(f"Redis: {url}  ({'embedded, data in ' + str(settings.redis_dir) if server else 'REDIS_URL'})")
        print(f"logs: {logs}/  ·  Ctrl-C stops everything", flush=True)
        while not stop["now"]:
            for name, proc in procs:
                if proc.poll() is None:
                    continue
                print(f"error: {name} stopped (status {proc.returncode}); see {logs / (name + '.log')}",
                      file=sys.stderr)
                stop["now"] = True
            time.sleep(0.3)
        return 0
    except RedisStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping ...", flush=True)
        stop_all([p for p in procs if p[0] != "audit"])
        stop_all([p for p in procs if p[0] == "audit"])  # its last anchor covers what the others wrote last
        if server is not None:
            server.stop()
        (settings.data_dir / "app.json").unlink(missing_ok=True)
        held.close()
        print("stopped", flush=True)
