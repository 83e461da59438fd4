"""RQ on a plain Redis beside the cluster: ECD_RQ_REDIS_URL, and a clear refusal without it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rq import Queue, SimpleWorker

from command.config import Settings
from command.keys import RQ_QUEUE, Keys
from command.ops.dispatch import dispatch, get_task
from command.ops.jobs import check_acknowledgement
from command.runtime.redis_client import RqOnCluster, client, is_cluster, rq_connection, rq_url
from command.runtime.redis_server import EmbeddedRedis
from command.scenarios.replay import run_replay
from tests.conftest import ROOT, SCENARIOS

MIN = 60_000


@pytest.fixture
def plain_url(tmp_path):
    server = EmbeddedRedis(tmp_path / "rq-redis")
    yield server.start()
    server.stop()


def test_the_cluster_is_detected_and_rq_needs_its_own_redis(cluster_url, plain_url):
    assert is_cluster(cluster_url) and not is_cluster(plain_url)
    assert rq_url(Settings(), plain_url) == plain_url  # one server: the job queue shares it, as always
    with pytest.raises(RqOnCluster, match="ECD_RQ_REDIS_URL"):
        rq_url(Settings(), cluster_url)
    assert rq_url(Settings(rq_redis_url=plain_url), cluster_url) == plain_url


def test_the_worker_refuses_to_start_on_a_cluster_without_a_queue_redis(cluster_url, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": cluster_url, "ECD_DATA_DIR": str(tmp_path / "var"),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "command", "worker", "--burst"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "ECD_RQ_REDIS_URL" in proc.stderr and "Redis Cluster" in proc.stderr


def test_app_refuses_to_start_on_a_cluster_without_a_queue_redis(cluster_url, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": cluster_url, "ECD_DATA_DIR": str(tmp_path / "var"),
           "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "app.py", "--port", "0", "--no-drill"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "ECD_RQ_REDIS_URL" in proc.stderr and "Redis Cluster" in proc.stderr


def test_an_acknowledgement_job_queued_on_the_plain_redis_flags_the_task_on_the_cluster(
        cluster_url, plain_url, monkeypatch):
    monkeypatch.setenv("REDIS_URL", cluster_url)
    monkeypatch.setenv("ECD_RQ_REDIS_URL", plain_url)
    r = client(cluster_url)
    res = run_replay(r, SCENARIOS / "rule_zone_incident")
    keys = Keys(res.namespace)
    fp = next(fp.decode() for fp in r.zrange(keys.alerts_open, 0, -1))
    d = dispatch(r, keys, fingerprint=fp, level="red", resource_ids=["B1"], operator="op", now=1000,
                 ack_ms=10 * MIN)
    tid = d.task_ids[0]
    queue_redis = rq_connection(r)
    assert not is_cluster(plain_url) and queue_redis.ping()
    queue = Queue(RQ_QUEUE, connection=queue_redis)
    r.set(keys.clock, 1000 + 11 * MIN)  # past the deadline, unacknowledged
    job = queue.enqueue(check_acknowledgement, keys.ns, tid)
    SimpleWorker([queue], connection=queue_redis).work(burst=True)
    assert job.return_value() == "flagged"
    assert get_task(r, keys, tid, None).flagged == "no acknowledgement after 11 min"
    assert not queue_redis.keys("ecd:*")  # the plain Redis holds RQ's keys only
