"""Which shards an engine should give up or try to take, so that engines share a namespace fairly.

Pure: the Redis edge (`command/engine/consumer.py`) reads who holds each shard's lease and which
engines are alive (their heartbeat keys), calls `plan`, then releases and tries leases itself.

Every engine computes the same targets from the same picture: the shards are dealt one at a time,
round robin, to the live engines ordered by how many they hold now (most first, then by name),
skipping an engine at its own cap (``--max-shards``). So each engine's target is the floor or the
ceiling of shards / engines, the ceilings go to those already holding more (the fewest moves), and
the targets add up to every shard. An engine above its target releases the difference; one below
it tries free shards. For taking, an engine puts itself first among those holding as many as it
does, so a free shard is never left waiting on an engine that may be dead but whose heartbeat has
not expired yet; for releasing, it uses the common order, so two engines never both keep an extra
shard while a third waits for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    release: tuple[int, ...]  # shards to give back (after their committed batch)
    take: tuple[int, ...]  # free shards to try, in order (SET NX: another engine may win one) ...
    want: int  # ... until this many were won
    target: int  # how many shards this engine should hold


def targets(nshards: int, counts: Mapping[str, int], caps: Mapping[str, int | None] | None = None,
            first: str | None = None) -> dict[str, int]:
    """How many shards each engine should hold: `nshards` dealt round robin over the engines of
    `counts` (engine -> shards held now), most held first, then by name; `first` is put ahead of
    the engines holding as many as it does. An engine never gets more than its cap."""
    caps = caps or {}
    order = sorted(counts, key=lambda e: (-counts[e], e != first, e))
    out = dict.fromkeys(order, 0)
    left = nshards
    while left > 0:
        dealt = False
        for e in order:
            if left == 0:
                break
            cap = caps.get(e)
            if cap is not None and out[e] >= cap:
                continue
            out[e] += 1
            left -= 1
            dealt = True
        if not dealt:  # every engine is at its cap: the rest stays free
            break
    return out


def plan(me: str, nshards: int, owners: Mapping[int, str | None], live: Iterable[str],
         caps: Mapping[str, int | None] | None = None) -> Plan:
    """What engine `me` should do now.

    `owners`: shard -> the engine whose lease holds it (None: free); `live`: the engines whose
    heartbeat is current (`me` counts as live whatever it says); `caps`: engine -> its most shards.
    A shard held by an engine that is not live is neither free nor counted: its lease expires by
    itself, and then it is free.
    """
    alive = set(live) | {me}
    counts = dict.fromkeys(alive, 0)
    for s in range(nshards):
        o = owners.get(s)
        if o in counts:
            counts[o] += 1
    mine = sorted(s for s in range(nshards) if owners.get(s) == me)
    common = targets(nshards, counts, caps)[me]
    if len(mine) > common:
        return Plan(release=tuple(mine[common:][::-1]), take=(), want=0, target=common)
    eager = targets(nshards, counts, caps, first=me)[me]
    want = max(0, eager - len(mine))
    free = tuple(s for s in range(nshards) if owners.get(s) is None) if want else ()
    return Plan(release=(), take=free, want=want, target=eager)
