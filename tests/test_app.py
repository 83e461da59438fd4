"""`python app.py` as a whole: starts everything, refuses a second copy, stops leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from .conftest import ROOT


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_starts_everything_refuses_a_second_copy_and_stops_cleanly(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # the embedded Redis this time
    env["ECD_DATA_DIR"] = str(tmp_path / "var")
    port = _port()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--speed", "max"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    info_file = tmp_path / "var" / "app.json"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (info_file.exists() and "children" in info_file.read_text()):
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.2)
        info = json.loads(info_file.read_text())
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        assert set(info["children"]) >= {"engine", "drills", "worker", "backtests", "web"}
        assert info["redis_pid"] and _alive(info["redis_pid"])

        second = subprocess.run([sys.executable, "app.py", "--port", str(_port())], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert "already running on this data folder" in second.stderr
        assert _alive(info["redis_pid"])  # and the first one was not disturbed
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200

        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "Flood command is running: http://127.0.0.1:" in out and out.rstrip().endswith("stopped")
        pids = list(info["children"].values()) + [info["redis_pid"]]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        assert not [p for p in pids if _alive(p)]
        assert not info_file.exists()
        for log in (tmp_path / "var" / "logs").iterdir():  # every process stopped without an error
            assert "Traceback" not in log.read_text(errors="replace"), log.name
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _start(env, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "app.py", "--port", str(port), *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _serving(proc: subprocess.Popen, port: int, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("app.py did not serve")


def test_a_restart_goes_on_with_the_running_exercise(tmp_path):
    """Stopped while its exercise runs, app.py started again resumes that exercise where it was (it does
    not mark it interrupted, nor start a second one), and it runs to the end."""
    import orjson

    from command.keys import Keys
    from command.ops import drills
    from command.runtime.redis_client import client

    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["ECD_DATA_DIR"] = str(tmp_path / "var")
    port = _port()
    first = _start(env, port, "--speed", "4000")
    try:
        _serving(first, port)
        r = client(json.loads((tmp_path / "var" / "app.json").read_text())["redis"])
        [d] = drills.list_drills(r)
        ns = d["namespace"]
        deadline = time.monotonic() + 60
        while int(drills.drill_state(r, ns).get("published", 0)) < 1000:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        r.close()
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=60)
        assert first.returncode == 0, out
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=10)

    second = _start(env, port)
    try:
        _serving(second, port)
        r = client(json.loads((tmp_path / "var" / "app.json").read_text())["redis"])
        assert [d["namespace"] for d in drills.list_drills(r)] == [ns]  # no second exercise
        assert orjson.loads(r.hget(drills.DRILLS, ns))["status"] == "running"
        stopped_at = int(drills.drill_state(r, ns)["published"])
        assert stopped_at >= 1000
        drills.send(r, "speed", ns=ns, speed="max", by="planner")
        deadline = time.monotonic() + 60
        while orjson.loads(r.hget(drills.DRILLS, ns))["status"] != "finished":
            assert time.monotonic() < deadline, drills.drill_state(r, ns)
            time.sleep(0.2)
        state = drills.drill_state(r, ns)
        assert state["published"] == state["total"]
        assert r.zcard(Keys(ns).alerts_index) == 40  # the same alerts as a run never stopped
        r.close()
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 0 and f"exercise: {ns} goes on from where it was" in out, out
    finally:
        if second.poll() is None:
            second.kill()
            second.communicate(timeout=10)


def test_the_supervisor_knows_the_web_app_and_the_feeds_only_as_processes():
    """command/runtime/supervisor.py imports nothing from layouts/ or feeds/, at the top or in a function."""
    import ast

    path = ROOT / "command" / "runtime" / "supervisor.py"
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
    assert names and not [n for n in names if n.split(".")[0] in ("layouts", "feeds", "app", "dash")]
    probe = ("import sys, command.runtime.supervisor; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('layouts', 'feeds', 'app', 'dash')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
