"""`python app.py` on the cluster (REDIS_URL a cluster node, ECD_RQ_REDIS_URL a plain Redis): every
process is up (the engine, the drill runner, the worker, the audit loop, the web), the sample exercise
replays to its 40 alerts, and a stop leaves no error in any log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from command.keys import Keys
from command.ops.drills import list_drills
from command.runtime.redis_client import client
from command.runtime.redis_server import EmbeddedRedis
from tests.conftest import ROOT


def test_the_whole_app_runs_on_the_cluster(cluster_url, tmp_path):
    with EmbeddedRedis(tmp_path / "rq") as plain:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, REDIS_URL=cluster_url, ECD_RQ_REDIS_URL=plain.url or "",
                   ECD_DATA_DIR=str(tmp_path / "var"), PYTHONPATH=str(ROOT))
        proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--speed", "max"], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        r = client(cluster_url)
        try:
            health, deadline = None, time.monotonic() + 90
            while time.monotonic() < deadline:
                try:
                    health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                    if health.get("status") == "ok":
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                time.sleep(0.5)
            assert health and health["status"] == "ok", health
            assert set(health["processes"]) >= {"engine", "drills", "worker", "audit", "web"}
            drill = []
            while time.monotonic() < deadline and not drill:
                drill = [d for d in list_drills(r) if d.get("status") == "finished"]
                time.sleep(0.5)
            assert drill, list_drills(r)
            assert r.zcard(Keys(drill[0]["namespace"]).alerts_index) == 40
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
            r.close()
        assert proc.returncode == 0, out[-2000:]
        for log in (tmp_path / "var" / "logs").iterdir():
            assert "Traceback" not in log.read_text(errors="replace"), log.name
