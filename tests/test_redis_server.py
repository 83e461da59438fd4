"""The embedded Redis: a real server that starts, persists, stops, and is shared per data folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import redis

from command.keys import Keys
from command.runtime.redis_server import EmbeddedRedis, _redis_binary

from .conftest import ROOT, SCENARIOS


def test_start_stop_and_aof_persistence(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    assert url.startswith("redis://127.0.0.1:")
    client = redis.Redis.from_url(url)
    assert client.info("server")["redis_version"].startswith("6.2")
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    client.set("kept", "across restarts")
    pid = server.proc.pid
    server.stop()
    assert not _alive(pid)
    assert (tmp_path / "redis" / "appendonly.aof").exists()

    again = EmbeddedRedis(tmp_path / "redis")
    client = redis.Redis.from_url(again.start())
    try:
        assert client.get("kept") == b"across restarts"
    finally:
        again.stop()


def test_a_second_process_on_the_same_folder_attaches_instead_of_starting_another(tmp_path):
    owner = EmbeddedRedis(tmp_path / "redis")
    url = owner.start()
    try:
        guest = EmbeddedRedis(tmp_path / "redis")
        assert guest.start() == url and not guest.owner and guest.proc is None
        guest.stop()  # detaching leaves the owner's server running
        assert redis.Redis.from_url(url).ping()
    finally:
        owner.stop()


def test_a_dead_server_gives_a_clear_error(tmp_path):
    folder = tmp_path / "redis"
    folder.mkdir()
    (folder / "appendonly.aof").write_text("this is not an append-only file\n")
    server = EmbeddedRedis(folder)
    try:
        server.start(timeout=5)
    except Exception as exc:  # noqa: BLE001 - asserting on the message
        assert "did not start" in str(exc) and "appendonly" in str(exc).lower() or "AOF" in str(exc)
    else:
        server.stop()
        raise AssertionError("a corrupt AOF must stop the start with the server's own message")


def test_cli_without_redis_url_starts_and_stops_an_embedded_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["ECD_DATA_DIR"] = str(tmp_path / "var")
    proc = subprocess.run([sys.executable, "-m", "command", "replay", str(SCENARIOS / "rule_accumulation"),
                           "--out", str(tmp_path / "out"), "--quiet"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "var" / "redis" / "appendonly.aof").exists()
    assert not (tmp_path / "var" / "redis" / "server.json").exists()  # stopped on exit
    assert "1 alerts" in proc.stdout


def test_a_separately_started_server_via_redis_url(tmp_path):
    """Any Redis >= 6.2 given by REDIS_URL: here a second server started on its own, not by the project."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = subprocess.Popen([_redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/3"
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        env = dict(os.environ, REDIS_URL=url, ECD_DATA_DIR=str(tmp_path / "var"))
        proc = subprocess.run([sys.executable, "-m", "command", "replay", str(SCENARIOS / "rule_threshold"),
                               "--namespace", "second-server", "--quiet"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert client.zcard(Keys("second-server").alerts_index) == 2
        assert not (tmp_path / "var").exists()  # nothing embedded was started
    finally:
        srv.terminate()
        srv.wait(10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child counts as gone
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split()[2] != "Z"
