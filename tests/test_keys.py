"""Key formats are a contract with every process that shares the Redis: pinned here (as rq does).

The tests introspect `command.keys`: a key added to `Keys` or to the module without being pinned
here fails `test_every_key_is_pinned`, so no key format changes unnoticed.
"""

from __future__ import annotations

import inspect
import itertools
from fnmatch import fnmatchcase

import pytest

from command import keys as keys_module
from command.keys import (
    GLOBAL_KEYS,
    RESERVED_NAMESPACES,
    Keys,
    address_failures,
    login_failures,
    open_data_rate,
    preferences,
    session,
    shard_of,
    totp_used,
    user_sessions,
)

# Keys(ns) members: name -> (arguments, format with {ns}); properties take no arguments.
NAMESPACED = {
    "shard_stream": ((3,), "ecd:{{{ns}:s3}}:readings"),
    "shard_added": ((3,), "ecd:{{{ns}:s3}}:added"),
    "shard_state": ((3,), "ecd:{{{ns}:s3}}:state"),
    "shard_lease": ((3,), "ecd:{{{ns}:s3}}:lease"),
    "shard_outputs": ((3,), "ecd:{{{ns}:s3}}:outputs"),
    "outputs_applied": ((), "ecd:{{{ns}}}:outputs-applied"),
    "meta": ((), "ecd:{{{ns}}}:meta"),
    "clock": ((), "ecd:{{{ns}}}:clock"),
    "stations": ((), "ecd:{{{ns}}}:stations"),
    "zones": ((), "ecd:{{{ns}}}:zones"),
    "resources": ((), "ecd:{{{ns}}}:resources"),
    "basemap": ((), "ecd:{{{ns}}}:basemap"),
    "rules": ((), "ecd:{{{ns}}}:rules"),
    "roads": ((), "ecd:{{{ns}}}:roads"),
    "road_closures": ((), "ecd:{{{ns}}}:road-closures"),
    "alerts_stream": ((), "ecd:{{{ns}}}:alerts"),
    "alert": (("fp1",), "ecd:{{{ns}}}:alert:fp1"),
    "alerts_open": ((), "ecd:{{{ns}}}:alerts:open"),
    "alerts_index": ((), "ecd:{{{ns}}}:alerts:index"),
    "recommendations_stream": ((), "ecd:{{{ns}}}:recommendations"),
    "recommendation": (("fp1",), "ecd:{{{ns}}}:rec:fp1"),
    "deadletter": ((), "ecd:{{{ns}}}:deadletter"),
    "events": ((), "ecd:{{{ns}}}:events"),
    "latest": ((), "ecd:{{{ns}}}:latest"),
    "latest_seq": ((), "ecd:{{{ns}}}:latest:seq"),
    "latest_changed": ((), "ecd:{{{ns}}}:latest:changed"),
    "series": (("WL-1",), "ecd:{{{ns}}}:series:WL-1"),
    "incidents": ((), "ecd:{{{ns}}}:incidents"),
    "warnings": ((), "ecd:{{{ns}}}:warnings"),
    "warnings_stream": ((), "ecd:{{{ns}}}:warnings:events"),
    "feeds": ((), "ecd:{{{ns}}}:feeds"),
    "feed_health": (("usgs",), "ecd:{{{ns}}}:feed:usgs:health"),
    "feed_hwm": (("usgs",), "ecd:{{{ns}}}:feed:usgs:hwm"),
    "feed_http": (("usgs",), "ecd:{{{ns}}}:feed:usgs:http"),
    "feed_stations": (("usgs",), "ecd:{{{ns}}}:feed:usgs:stations"),
    "forecasts": ((), "ecd:{{{ns}}}:forecasts"),
    "dispatches_stream": ((), "ecd:{{{ns}}}:dispatches"),
    "dispatch": (("d1",), "ecd:{{{ns}}}:dispatch:d1"),
    "dispatches_index": ((), "ecd:{{{ns}}}:dispatches:index"),
    "dispatch_claim": (("fp1", "red"), "ecd:{{{ns}}}:dispatch-claim:fp1:red"),
    "task": (("t1",), "ecd:{{{ns}}}:task:t1"),
    "ack_timers": ((), "ecd:{{{ns}}}:ack-timers"),
    "verify_watch": ((), "ecd:{{{ns}}}:verify-watch"),
    "department_tasks": (("fire",), "ecd:{{{ns}}}:tasks:fire"),
    "status_stream": ((), "ecd:{{{ns}}}:status"),
    "alert_notes": (("fp1",), "ecd:{{{ns}}}:alert-notes:fp1"),
    "audit": ((), "ecd:{{{ns}}}:audit"),
    "audit_head": ((), "ecd:{{{ns}}}:audit:head"),
    "read_audited": (("ab12",), "ecd:{{{ns}}}:read-audited:ab12"),
    "replay_control": ((), "ecd:{{{ns}}}:replay"),
    "rate_bucket": (("feed", "usgs"), "ecd:{{{ns}}}:rate:feed:usgs"),
    # engines sharing the shards (command/engine/balance.py)
    "engines": ((), "ecd:{{{ns}}}:engines"),
    "engine_heartbeat": (("host-1-ab12cd",), "ecd:{{{ns}}}:engine:host-1-ab12cd"),
}
# Keys(ns) members that are not Redis keys
NOT_KEYS = {
    "ns": "{ns}",
    "cap_prefix": "ecd.{ns}",
    "pattern": ["ecd:{{{ns}}}:*", "ecd:{{{ns}:s*}}:*"],
}
# module-level names of command.keys, pinned
MODULE = {
    "PREFIX": "ecd",
    "ENGINE_GROUP": "engine",
    "RQ_QUEUE": "ecd",
    "RQ_BACKTEST_QUEUE": "ecd-backtests",
    "CAP_ID_PREFIX": "ecd",
    "LIVE": "live",
    "DRILLS": "ecd:drills",
    "DRILL_COMMANDS": "ecd:drills:commands",
    "DRILL_CURSOR": "ecd:drills:cursor",
    "LOGIN_FAILURES": "ecd:auth:{throttle}:failures",
    "AUDIT_NAMESPACES": "ecd:audit:namespaces",
    "ACK_TIMER_NAMESPACES": "ecd:timers:namespaces",
    "HEALTH_PROBE": "ecd:health",
    "OPEN_DATA_RATE": "ecd:open-data:rate",
    "PREFERENCES": "ecd:prefs",
    "GLOBAL_KEYS": ("ecd:drills", "ecd:drills:commands", "ecd:drills:cursor", "ecd:auth:{throttle}:failures",
                    "ecd:audit:namespaces", "ecd:timers:namespaces", "ecd:health", "ecd:open-data:rate",
                    "ecd:prefs"),
    "RESERVED_NAMESPACES": frozenset({"drills", "auth", "audit", "timers", "health", "open-data", "prefs"}),
}
# the sign-in's keys (command/trust/): under `ecd:auth:`, reserved by LOGIN_FAILURES's segment
MODULE.update({
    "ADDRESS_FAILURES": "ecd:auth:{throttle}:address-failures",
    "SESSIONS": "ecd:auth:{sessions}:session",
    "USER_SESSIONS": "ecd:auth:{sessions}:user-sessions",
    "TOTP_USED": "ecd:auth:totp-used",
})
MODULE_FUNCTIONS = {"login_failures", "shard_of", "address_failures", "session", "user_sessions", "totp_used",
                    "open_data_rate", "preferences", "sync_probe"}
NAMESPACES = ["live", "drill-jiangcheng_flood-0a1b2c3d", "record-1234abcd", "x", "A.b-c_9", "d" * 64]


def keys_of(k: Keys) -> dict[str, str]:
    """Every Redis key `k` builds, by member name."""
    out = {}
    for name, (args, _) in NAMESPACED.items():
        member = getattr(k, name)
        out[name] = member(*args) if callable(member) else member
    return out


def global_keys() -> list[str]:
    """Every global key: the module's constants and one of each family."""
    return [*GLOBAL_KEYS, login_failures("Operator"), login_failures("x" * 100), address_failures("10.0.0.1"),
            address_failures("2001:db8:1:2::/64"), session("ab" * 32), user_sessions("operator"),
            totp_used("operator"), open_data_rate("203.0.113.7", 29_000_000), preferences("operator")]


def _defined_in_keys(v: object) -> bool:
    if inspect.ismodule(v) or type(v).__name__ == "_Feature":  # an import, `from __future__ import annotations`
        return False
    if inspect.isfunction(v) or inspect.isclass(v):
        return v.__module__ == keys_module.__name__
    return True  # a constant


def test_every_key_is_pinned():
    public = {n for n, _ in inspect.getmembers(Keys) if not n.startswith("_")} | set(Keys.__slots__) - {"_p"}
    assert public == set(NAMESPACED) | set(NOT_KEYS), "pin the new Keys member's format in NAMESPACED"
    own = {n for n, v in vars(keys_module).items() if not n.startswith("_") and _defined_in_keys(v)}
    assert own == set(MODULE) | MODULE_FUNCTIONS | {"Keys"}, "pin the new module-level name in MODULE"


@pytest.mark.parametrize("ns", NAMESPACES)
def test_key_formats(ns):
    k = Keys(ns)
    for name, key in keys_of(k).items():
        assert key == NAMESPACED[name][1].format(ns=ns), name
    assert k.ns == ns
    assert k.cap_prefix == f"ecd.{ns}"
    assert k.pattern() == [p.format(ns=ns) for p in NOT_KEYS["pattern"]]


def test_module_level_keys():
    for name, value in MODULE.items():
        assert getattr(keys_module, name) == value, name
    assert login_failures("Operator") == "ecd:auth:{throttle}:failures:operator"
    assert login_failures("x" * 100) == "ecd:auth:{throttle}:failures:" + "x" * 64
    assert address_failures("2001:DB8::/64") == "ecd:auth:{throttle}:address-failures:2001:db8::/64"
    assert session("ab" * 32) == "ecd:auth:{sessions}:session:" + "ab" * 32
    assert user_sessions("Operator") == "ecd:auth:{sessions}:user-sessions:Operator"
    assert totp_used("operator") == "ecd:auth:totp-used:operator"
    assert open_data_rate("2001:DB8::/64", 29_000_000) == "ecd:open-data:rate:2001:db8::/64:29000000"
    assert preferences("operator") == "ecd:prefs:operator"


def test_the_sign_in_keys_sit_under_a_reserved_segment():
    auth = [v for n, v in vars(keys_module).items() if n.isupper() and isinstance(v, str) and v.startswith("ecd:auth")]
    assert len(auth) == 5
    assert all(k.split(":")[1] in RESERVED_NAMESPACES for k in auth)


def test_reserved_names_come_from_the_global_keys():
    assert RESERVED_NAMESPACES == {k.split(":")[1] for k in global_keys()}
    for ns in RESERVED_NAMESPACES:
        with pytest.raises(ValueError, match="reserved"):
            Keys(ns)


@pytest.mark.parametrize("ns", NAMESPACES)
def test_a_namespace_pattern_matches_all_its_keys_and_nothing_else(ns):
    k = Keys(ns)
    mine = set(keys_of(k).values())
    assert all(any(fnmatchcase(key, p) for p in k.pattern()) for key in mine)
    for other in NAMESPACES:
        if other != ns:
            theirs = set(keys_of(Keys(other)).values())
            assert not mine & theirs
            assert not [key for key in theirs for p in k.pattern() if fnmatchcase(key, p)], (ns, other)
    for key in global_keys():
        assert key not in mine
        assert not any(fnmatchcase(key, p) for p in k.pattern()), (ns, key)


def _near(name: str) -> set[str]:
    """Valid namespace names next to `name`: its prefixes, other cases, and with something after it."""
    out = {name[:i] for i in range(1, len(name))} | {name.upper(), name.title(), f"{name}-1", f"{name}.x", f"{name}_"}
    return out - {name}


def test_no_namespace_pattern_reaches_a_global_key():
    """No namespace that can be made reaches a global key: the names that would are refused, and
    every name next to them (or made from any segment of a global key) matches none."""
    segments = {seg for key in global_keys() for seg in key.split(":")}
    candidates = segments | {n for s in segments | RESERVED_NAMESPACES for n in _near(s)} | set(NAMESPACES)
    made = 0
    for ns in sorted(candidates):
        try:
            k = Keys(ns)
        except ValueError:
            assert ns in RESERVED_NAMESPACES or not ns or not ns[0].isalnum() or len(ns) > 64, ns
            continue
        made += 1
        for key, p in itertools.product(global_keys(), k.pattern()):
            assert not fnmatchcase(key, p), (ns, p, key)
    assert made > 20


@pytest.mark.parametrize("bad", ["", "has space", "a:b", "{x}", "x" * 65, "live\n", "live\r\n", "\nlive", "a*",
                                 "a?", "a[b]", "-x", ".x", "_x", "drills", "auth", "audit"])
def test_invalid_namespace_refused(bad):
    with pytest.raises(ValueError):
        Keys(bad)


def test_shard_of_is_stable_and_spread():
    assert shard_of("WL-001", 1) == 0
    assert shard_of("WL-001", 8) == shard_of("WL-001", 8)
    assert shard_of("WL-001", 8) == 6  # crc32: the same on every machine and process
    assert len({shard_of(f"S{i}", 4) for i in range(100)}) == 4


# Redis Cluster layout (docs/architecture.md, Redis Cluster): what one transaction writes shares a slot.
SHARD_KEYS = {"shard_stream", "shard_state", "shard_lease", "shard_outputs", "shard_added"}


@pytest.mark.parametrize("ns", NAMESPACES)
def test_a_shard_and_a_namespace_each_live_in_one_cluster_slot(ns):
    from redis.cluster import key_slot

    k = Keys(ns)
    slots: dict[str, set[int]] = {"namespace": set()}
    for name, key in keys_of(k).items():
        if name in SHARD_KEYS:
            slots.setdefault("shard", set()).add(key_slot(key.encode()))
        else:
            slots["namespace"].add(key_slot(key.encode()))
    assert len(slots["shard"]) == 1  # the engine's commit: stream, state, lease, outbox, XACK
    assert len(slots["namespace"]) == 1  # alerts, dispatch, tasks, audit: one slot per namespace
    # the shards of a namespace spread over the slots (and so over a cluster's masters)
    assert len({key_slot(k.shard_stream(s).encode()) for s in range(16)}) >= 12


def test_the_sync_probe_shares_the_slot_of_its_key():
    from redis.cluster import key_slot

    from command.keys import sync_probe

    k = Keys("live")
    assert sync_probe(k.shard_state(3)) == "ecd:{live:s3}:sync-probe"
    assert sync_probe(k.alerts_open) == "ecd:{live}:sync-probe"
    for key in (k.shard_state(3), k.alerts_open):
        assert key_slot(sync_probe(key).encode()) == key_slot(key.encode())
