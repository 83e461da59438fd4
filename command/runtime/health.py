"""What `/health` says (layouts/signin.py serves it): is each part of the command centre working?

- **redis**: a *write* (SET of `keys.HEALTH_PROBE` with a short expiry), on a client with short
  timeouts and no retry, so the answer comes within about a second whatever Redis does. A ping
  alone passes while Redis refuses writes (memory full: OOM; a failed snapshot: MISCONF), and then
  nothing can be dispatched or recorded.
- **processes**: the supervisor's state file (`<data>/app.json`, command/runtime/supervisor.py):
  each child running, being restarted after it stopped, or given up on; and whether the supervisor
  itself is still there. Absent when the web server runs without `python app.py`.

The answer is ``{"status": "ok", ...}`` (HTTP 200) or ``{"status": "degraded", "degraded": [parts],
...}`` (HTTP 503), each part with a short description. docs/operations.md says what the operator on
duty does for each.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import redis

from command.keys import HEALTH_PROBE
from command.runtime.redis_client import writes_refused
from command.timeutil import now_ms

PROBE_TTL_MS = 10_000


def redis_state(probe: redis.Redis) -> str:
    """"ok", or what is wrong with Redis, in a few words."""
    try:
        try:
            probe.set(HEALTH_PROBE, now_ms(), px=PROBE_TTL_MS)
        except redis.ConnectionError as exc:
            if isinstance(exc, redis.BusyLoadingError):
                raise
            # a pooled connection to a Redis that was restarted since: once more, on a fresh one
            probe.set(HEALTH_PROBE, now_ms(), px=PROBE_TTL_MS)
    except redis.BusyLoadingError:
        return "loading: Redis is reading its data back after a restart"
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        return f"unavailable: {exc}"
    except redis.RedisError as exc:
        refused = writes_refused(exc)
        return f"refuses writes: {refused}" if refused else f"error: {exc}"
    return "ok"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_states(state_file: Path) -> dict[str, str] | None:
    """Each supervised process as "ok" or what became of it; None without a state file."""
    try:
        doc = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    out: dict[str, str] = {}
    pid = doc.get("pid")
    out["supervisor"] = "ok" if isinstance(pid, int) and _alive(pid) else \
        "not running: app.py is gone and nothing restarts its processes"
    for name, p in (doc.get("processes") or {}).items():
        state = p.get("state")
        if state == "running":
            out[name] = "ok"
        elif state == "restarting":
            out[name] = (f"restarting: {p.get('last_exit')}; starting again in {p.get('restart_in_s', 0):g} s "
                         f"(restarts so far: {p.get('restarts', 0)})")
        elif state == "failed":
            out[name] = f"failed: given up after repeated stops; last: {p.get('last_exit')}; see {p.get('log')}"
        else:
            out[name] = str(state)
    return out


def check(probe: redis.Redis, data_dir: Path | None) -> tuple[dict[str, Any], int]:
    """The body and HTTP status of /health."""
    body: dict[str, Any] = {"status": "ok", "redis": redis_state(probe)}
    degraded = [] if body["redis"] == "ok" else ["redis"]
    procs = process_states(data_dir / "app.json") if data_dir is not None else None
    if procs is not None:
        body["processes"] = procs
        degraded += [name for name, s in procs.items() if s != "ok" and name != "redis"]
    if degraded:
        body["status"] = "degraded"
        body["degraded"] = degraded
        return body, 503
    return body, 200
