"""Key formats are a contract with every process that shares the Redis: pinned here (as rq does)."""

import pytest

from command.keys import Keys, shard_of


def test_key_formats():
    k = Keys("live")
    assert k.shard_stream(0) == "ecd:{live:s0}:readings"
    assert k.shard_state(3) == "ecd:{live:s3}:state"
    assert k.shard_lease(1) == "ecd:{live:s1}:lease"
    assert k.alerts_stream == "ecd:live:alerts"
    assert k.alert("abc") == "ecd:live:alert:abc"
    assert k.alerts_open == "ecd:live:alerts:open"
    assert k.alerts_index == "ecd:live:alerts:index"
    assert k.recommendation("abc") == "ecd:live:rec:abc"
    assert k.recommendations_stream == "ecd:live:recommendations"
    assert k.deadletter == "ecd:live:deadletter"
    assert k.stations == "ecd:live:stations" and k.resources == "ecd:live:resources"
    assert k.meta == "ecd:live:meta" and k.clock == "ecd:live:clock" and k.rules == "ecd:live:rules"
    from command.keys import login_failures

    assert login_failures("Operator") == "ecd:auth:failures:operator"


def test_namespaces_never_share_a_key():
    a, b = Keys("live"), Keys("drill-1")
    names = ["meta", "clock", "stations", "zones", "resources", "rules", "alerts_stream", "alerts_open",
             "alerts_index", "recommendations_stream", "deadletter", "events"]
    assert not {getattr(a, n) for n in names} & {getattr(b, n) for n in names}
    assert a.shard_stream(0) != b.shard_stream(0)


@pytest.mark.parametrize("bad", ["", "has space", "a:b", "{x}", "x" * 65])
def test_invalid_namespace_refused(bad):
    with pytest.raises(ValueError):
        Keys(bad)


def test_shard_of_is_stable_and_spread():
    assert shard_of("WL-001", 1) == 0
    assert shard_of("WL-001", 8) == shard_of("WL-001", 8)
    assert shard_of("WL-001", 8) == 6  # crc32: the same on every machine and process
    assert len({shard_of(f"S{i}", 4) for i in range(100)}) == 4
