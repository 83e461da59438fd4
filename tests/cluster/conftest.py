"""A real 3-master + 3-replica Redis Cluster for the tests under tests/cluster/ (marker `cluster`),
started once per session from the embedded redis-server (tests/cluster/cluster.py)."""

from __future__ import annotations

import pytest
import redis

from .cluster import Cluster, start_cluster


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/cluster/" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Cluster:
    c = start_cluster(tmp_path_factory.mktemp("cluster"), masters=3, replicas=1)
    yield c
    c.stop()


def flush_all(c: Cluster) -> None:
    for m in c.masters():
        m.client().flushall()


@pytest.fixture
def cluster_url(cluster) -> str:
    """The URL of a node of the session's cluster, every master flushed before and after the test."""
    cluster.wait_ok()
    flush_all(cluster)
    yield cluster.url
    flush_all(cluster)


@pytest.fixture
def rc(cluster_url) -> redis.RedisCluster:
    client = redis.RedisCluster.from_url(cluster_url)
    yield client
    client.close()


# The fixtures of tests/conftest.py, pointed at the cluster: a test module imported into tests/cluster/
# runs unchanged on it (tests/cluster/test_on_cluster.py).
@pytest.fixture(scope="session")
def redis_url(cluster) -> str:
    return cluster.url


@pytest.fixture
def r(cluster_url) -> redis.Redis:
    from command.runtime.redis_client import client

    c = client(cluster_url, "app")
    yield c
    c.close()
