"""The real app (`python app.py --no-drill`, embedded Redis, its own port and data folder) for the
fault drills, and what they need to look at it: its state file, /health, child processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from command.keys import Keys
from command.ops import drills
from command.runtime.redis_client import client
from command.streams import input_count

from ..conftest import ROOT

SCENARIO = ROOT / "sample_data" / "scenarios" / "jiangcheng_flood"  # 48 h, 32 stations, 40 alerts
SPEED = "16000"  # the whole scenario in about 11 s: long enough to be hit, short enough to wait for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(pid: int) -> list[int]:
    """The live child processes of `pid`, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return sorted(out)


@dataclass
class App:
    base: str
    data: Path
    proc: subprocess.Popen
    r: redis.Redis  # an "app" client on its Redis (retries while Redis restarts)

    def state(self) -> dict:
        return json.loads((self.data / "app.json").read_text())

    def pid(self, name: str) -> int | None:
        return self.state()["processes"][name]["pid"]

    def health(self, timeout: float = 2.0) -> tuple[int, dict]:
        resp = httpx.get(self.base + "/health", timeout=timeout)
        return resp.status_code, resp.json()

    def wait_healthy(self, within: float = 30.0) -> float:
        """Seconds until /health says ok; fails after `within`."""
        t0 = time.monotonic()
        last = None
        while time.monotonic() - t0 < within:
            try:
                last = self.health()
                if last[0] == 200:
                    return time.monotonic() - t0
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.2)
        raise AssertionError(f"/health not ok within {within} s: {last}")

    def log(self, name: str) -> str:
        path = self.data / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_app(data: Path, *extra: str, env: dict[str, str] | None = None) -> App:
    env = dict(env or os.environ)
    env.pop("REDIS_URL", None)  # the embedded Redis: its process is one of those killed
    env.update(ECD_DATA_DIR=str(data), PYTHONUNBUFFERED="1", ECD_ACK_MINUTES="10")
    port = free_port()
    out = open(data.parent / f"{data.name}.out", "w")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--no-drill", *extra], cwd=ROOT,
                            env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, (data.parent / f"{data.name}.out").read_text()
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        raise AssertionError("app.py did not serve in 60 s")
    url = json.loads((data / "app.json").read_text())["redis"]
    return App(base, data, proc, client(url, "app"))


def stop_app(app: App) -> None:
    """SIGTERM: it must stop everything it started and exit 0."""
    info = app.state()
    pids = [p["pid"] for p in info["processes"].values() if p["pid"]]
    pids += [c for p in pids for c in children_of(p)]
    app.proc.send_signal(signal.SIGTERM)
    assert app.proc.wait(60) == 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if alive(p)]
    assert not (app.data / "app.json").exists()
    app.r.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    data = tmp_path_factory.mktemp("faults") / "var"
    a = start_app(data)
    try:
        yield a
    finally:
        if a.proc.poll() is None:
            stop_app(a)


# ---- drills and their outcome --------------------------------------------------------------------------
def outcome(r: redis.Redis, ns: str) -> dict:
    """What a replay produced: every alert as stored, and how many entries reached the input stream and
    the events stream (one more or fewer is input lost or doubled)."""
    k = Keys(ns)
    alerts = {fp.decode(): orjson.loads(r.get(k.alert(fp.decode()))) for fp in r.zrange(k.alerts_index, 0, -1)}
    # entries ever added (the input stream itself is trimmed once the engine acknowledged them)
    return {"alerts": alerts, "entries": input_count(r, k), "events": r.xlen(k.events)}


def drill_status(r: redis.Redis, ns: str) -> str:
    return orjson.loads(r.hget(drills.DRILLS, ns))["status"]


def progress(r: redis.Redis, ns: str) -> float:
    st = drills.drill_state(r, ns)
    return int(st.get("published", 0)) / max(1, int(st.get("total", 1) or 1))


def wait_for(cond, within: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            value = cond()
        except (redis.RedisError, OSError, httpx.HTTPError, KeyError, ValueError):
            value = None
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {within} s")
