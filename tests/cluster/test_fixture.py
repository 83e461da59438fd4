"""The cluster fixture itself: formed, every slot served, a killed master's replica takes over."""

from __future__ import annotations

import redis

from .cluster import start_cluster


def test_the_session_cluster_has_three_masters_each_with_a_replica(cluster, rc):
    assert len(cluster.masters()) == 3
    assert len(cluster.nodes) == 6
    for n in cluster.nodes:
        assert n.client().cluster("info")["cluster_state"] == "ok"
    # keys with different hash tags land on different masters: the data is spread
    owners = {cluster.master_of(f"{{t{i}}}:k").port for i in range(30)}
    assert len(owners) == 3
    rc.set("{t1}:k", "v")
    assert rc.get("{t1}:k") == b"v"


def test_a_killed_master_is_replaced_by_its_replica(tmp_path):
    with start_cluster(tmp_path, masters=3, replicas=1) as c:
        client = redis.RedisCluster.from_url(c.url)
        client.set("{f}:k", "kept")
        c.wait_replicas_synced()
        # the write has reached the replica before the kill (WAIT on the key's own master)
        assert client.wait(1, 2000, target_nodes=client.get_node_from_key("{f}:k")) == 1
        old = c.master_of("{f}:k")
        c.kill(old)
        c.wait_ok()
        new = c.master_of("{f}:k")
        assert new.port != old.port and new.role == "replica"  # a replica was promoted
        assert client.get("{f}:k") == b"kept"
        client.close()
