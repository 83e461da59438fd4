"""A namespace on the cluster spreads over the masters and is deleted whole (keys in every slot)."""

from __future__ import annotations

from command.keys import Keys
from command.runtime.redis_client import client
from command.scenarios.namespaces import delete_namespace
from command.scenarios.replay import run_replay
from tests.conftest import SCENARIOS


def _all_keys(cluster) -> set[bytes]:
    return {k for m in cluster.masters() for k in m.client().scan_iter(match="ecd:*")}


def test_a_namespace_spread_over_the_masters_is_deleted_whole(cluster, cluster_url):
    r = client(cluster_url)
    keep = Keys(run_replay(r, SCENARIOS / "rule_threshold").namespace)
    res = run_replay(r, SCENARIOS / "rule_zone_incident", shards=8)
    keys = Keys(res.namespace)
    mine = {k for k in _all_keys(cluster) if k.startswith((f"ecd:{{{keys.ns}}}:".encode(),
                                                           f"ecd:{{{keys.ns}:s".encode()))}
    assert len({cluster.master_of(k.decode()).port for k in mine}) == 3  # on every master
    others = _all_keys(cluster) - mine
    assert delete_namespace(r, keys) == len(mine)
    assert _all_keys(cluster) == others  # the other namespace, untouched
    assert r.zcard(keep.alerts_index) > 0
