"""The supervisor's limits, on the real app: a child that cannot be kept up is given up on while the
rest keeps serving (degraded, and /health says which); the web server is essential, so when it
cannot be kept up everything stops with exit status 1; and when the supervisor itself is killed, its
children do not outlive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from ..conftest import ROOT
from .conftest import alive, children_of, free_port, wait_for

pytestmark = pytest.mark.faults

# app.py, with one child's command replaced by one that exits at once (status 3): the child whose
# command line names `which`, followed by exactly the arguments `then` when given (the backtests'
# worker is `worker --backtests`, the other RQ worker `worker`)
BROKEN = """
import sys
sys.path.insert(0, {root!r})
from command.runtime import supervisor
real = supervisor.spawn
def spawn(args, env, log):
    if {which!r} in args and ({then!r} is None or args[args.index({which!r}) + 1:] == {then!r}):
        args = [sys.executable, "-c", "import sys; sys.exit(3)"]
    return real(args, env, log)
supervisor.spawn = spawn
import app
sys.exit(app.main(sys.argv[1:]))
"""


def start_broken(tmp_path, which: str, port: int, then: list[str] | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(ECD_DATA_DIR=str(tmp_path / "var"), PYTHONUNBUFFERED="1", ECD_RESTART_FIRST_S="0.1",
               ECD_RESTART_MAX_S="0.4")
    return subprocess.Popen([sys.executable, "-c", BROKEN.format(root=str(ROOT), which=which, then=then), "--port", str(port),
                             "--no-drill"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_a_child_given_up_on_leaves_the_rest_serving_and_health_says_so(tmp_path):
    port = free_port()
    proc = start_broken(tmp_path, "worker", port, then=[])
    base = f"http://127.0.0.1:{port}"
    try:
        def degraded():
            resp = httpx.get(base + "/health", timeout=2)
            body = resp.json()
            return body if resp.status_code == 503 and body["processes"].get("worker", "").startswith("failed") \
                else None

        body = wait_for(degraded, 60, "the worker given up on, and said so")
        assert body["degraded"] == ["worker"] and "exited with status 3" in body["processes"]["worker"]
        assert body["redis"] == "ok" and body["processes"]["engine"] == "ok"
        assert proc.poll() is None  # still serving
        supervisor_log = (tmp_path / "var" / "logs" / "supervisor.log").read_text()
        assert supervisor_log.count("worker exited with status 3") == 5
        assert "giving up on it after 5 stops within 60 s" in supervisor_log

        # killed outright, the supervisor takes its children with it (they get SIGTERM and stop)
        import json

        pids = [p["pid"] for p in json.loads((tmp_path / "var" / "app.json").read_text())["processes"].values()
                if p["pid"]]
        pids += [c for p in pids for c in children_of(p)]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: not [p for p in pids if alive(p)], 20, "no child left behind")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_when_the_web_server_cannot_be_kept_up_everything_stops_with_status_1(tmp_path):
    proc = start_broken(tmp_path, "gunicorn", free_port())
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1, out
    assert "the web server cannot be kept up; stopping everything" in out
    assert out.rstrip().endswith("stopped")
    assert not (tmp_path / "var" / "app.json").exists()
    time.sleep(0.5)
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert not [p for p in leftovers if alive(int(p))]
