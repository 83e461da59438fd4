"""An upgraded server keeps its data: keys of the layout before the namespace hash tag are renamed."""

from __future__ import annotations

import redis

from command.keys import DRILLS, Keys
from command.runtime.key_migration import rename_untagged


def test_untagged_namespace_keys_are_renamed_and_global_keys_left_alone(tmp_path):
    from command.runtime.redis_server import EmbeddedRedis

    with EmbeddedRedis(tmp_path / "redis") as server:
        r = redis.Redis.from_url(server.url)
        r.set("ecd:live:rules", b"{}")
        r.zadd("ecd:live:alerts:open", {"fp1": 1})
        r.set("ecd:drill-x.1:alert:fp2", b"a")
        r.set("ecd:{live}:clock", b"new")  # written by the new layout already: kept
        r.set("ecd:live:clock", b"old")
        r.hset(DRILLS, "drill-x.1", b"{}")
        r.set("ecd:{live:s0}:state", b"s")
        assert rename_untagged(r) == 3
        k = Keys("live")
        assert r.get(k.rules) == b"{}" and r.zscore(k.alerts_open, "fp1") == 1
        assert r.get(Keys("drill-x.1").alert("fp2")) == b"a"
        assert r.get(k.clock) == b"new" and r.get("ecd:live:clock") == b"old"
        assert r.hget(DRILLS, "drill-x.1") == b"{}" and r.get("ecd:{live:s0}:state") == b"s"
        assert rename_untagged(r) == 0  # once
        r.close()
