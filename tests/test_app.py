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
        assert set(info["children"]) >= {"engine", "drills", "worker", "web"}
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
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


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
