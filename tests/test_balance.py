"""The pure lease-balancing decision (command/engine/balance.py): targets, releases, takes, and a
simulation of engines joining and leaving that must settle on fair shares without losing a shard."""

from __future__ import annotations

import math
import random

import pytest

from command.engine.balance import plan, targets


def test_targets_are_floor_or_ceiling_and_cover_every_shard():
    for n in range(0, 40):
        for engines in range(1, 9):
            counts = {f"e{i}": 0 for i in range(engines)}
            t = targets(n, counts)
            assert sum(t.values()) == n
            assert set(t.values()) <= {n // engines, math.ceil(n / engines)}


def test_the_ceilings_go_to_engines_already_holding_more():
    t = targets(4, {"a": 0, "b": 2, "c": 2})
    assert t == {"b": 2, "c": 1, "a": 1}  # ties by name: b keeps its second shard, c gives one up
    assert targets(1, {"zed": 1, "ann": 0}) == {"zed": 1, "ann": 0}  # no move for nothing


def test_caps_are_respected_and_the_rest_goes_to_the_others():
    assert targets(8, {"a": 0, "b": 0}, caps={"a": 2}) == {"a": 2, "b": 6}
    assert targets(8, {"a": 0, "b": 0}, caps={"a": 2, "b": 3}) == {"a": 2, "b": 3}  # 3 stay free


def test_a_lone_engine_takes_every_free_shard():
    p = plan("a", 4, {}, live=[])
    assert p.take == (0, 1, 2, 3) and p.want == 4 and p.release == () and p.target == 4


def test_an_engine_above_its_share_releases_its_extra_shards():
    owners = {0: "a", 1: "a", 2: "a", 3: "a"}
    p = plan("a", 4, owners, live=["a", "b"])
    assert p.release == (3, 2) and p.want == 0 and p.target == 2
    # the newcomer sees nothing free yet: it waits for the release
    q = plan("b", 4, owners, live=["a", "b"])
    assert q.take == () and q.want == 2 and q.release == () and q.target == 2
    # once released, the newcomer takes them, and the old engine does not take them back
    owners = {0: "a", 1: "a"}
    assert plan("b", 4, owners, live=["a", "b"]).take == (2, 3)
    assert plan("a", 4, owners, live=["a", "b"]).want == 0


def test_a_dead_engines_shards_wait_for_their_lease_then_go_to_the_living():
    owners = {0: "a", 1: "a", 2: "dead", 3: "dead"}
    assert plan("a", 4, owners, live=["a"]).take == ()  # still leased: not free
    owners = {0: "a", 1: "a"}  # the dead engine's leases expired
    assert plan("a", 4, owners, live=["a"]).take == (2, 3)


def test_a_free_shard_is_not_left_for_an_engine_that_may_be_dead():
    # "dead" was SIGKILLed: its heartbeat has not expired yet, it holds nothing; the free shard is taken
    for me, other in (("a", "z"), ("z", "a")):
        p = plan(me, 1, {}, live=[me, other])
        assert p.take == (0,) and p.want == 1


def test_plan_caps_this_engine():
    p = plan("a", 4, {}, live=["a"], caps={"a": 2})
    assert p.take == (0, 1, 2, 3) and p.want == 2 and p.target == 2


def simulate(n, names, owners, rng, caps=None, rounds=60):
    """Engines act one at a time in random order on the current picture (as with Redis in between):
    releases delete the lease; takes are SET NX (the first one wins). Returns the moves made."""
    moves = 0
    for _ in range(rounds):
        order = list(names)
        rng.shuffle(order)
        for me in order:
            p = plan(me, n, dict(owners), live=names, caps=caps)
            for s in p.release:
                assert owners[s] == me
                del owners[s]
                moves += 1
            won = 0
            for s in p.take:
                if won < p.want and s not in owners:
                    owners[s] = me
                    won += 1
    return moves


@pytest.mark.parametrize("n", [1, 3, 4, 8, 16, 17])
def test_engines_joining_and_leaving_settle_on_fair_shares(n):
    rng = random.Random(n)
    owners: dict[int, str] = {}
    simulate(n, ["e0"], owners, rng)
    assert len(owners) == n and set(owners.values()) == {"e0"}
    for names in (["e0", "e1"], ["e0", "e1", "e2"], ["e1", "e2"], ["e1", "e2", "e3", "e4"]):
        for s in [s for s, o in owners.items() if o not in names]:
            del owners[s]  # a stopped engine's leases are gone (released, or expired)
        before = dict(owners)
        moves = simulate(n, names, owners, rng)
        assert len(owners) == n  # every shard held
        held = [sum(1 for o in owners.values() if o == e) for e in names]
        assert max(held) <= math.ceil(n / len(names)) and min(held) >= n // len(names), (names, held)
        # settled: another round changes nothing
        assert simulate(n, names, owners, rng, rounds=3) == 0
        # no churn: every release handed a shard to another engine (none was given back and retaken)
        changed = sum(1 for s in owners if before.get(s) not in (None, owners[s]))
        assert moves == changed, (moves, changed)
