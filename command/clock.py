"""A namespace's "now": the one way every decision reads the time.

A namespace's clock (``ecd:<ns>:clock``, epoch ms) is scenario time in a drill (the replay feed
moves it) and the last live tick in live operation (the engine's `--live-ticks` moves it). Deciding
"is this deadline past?" or "was this alert resolved recently?" reads it here, never the wall
clock, so a drill decides on scenario time at any replay speed. Only the live edges (the live tick,
the feeds, the drill registry's timestamps) read the wall clock (`timeutil.now_ms`).
"""

from __future__ import annotations

from typing import overload

import redis

from command.keys import Keys


@overload
def namespace_now(r: redis.Redis, keys: Keys) -> int | None: ...
@overload
def namespace_now(r: redis.Redis, keys: Keys, default: int) -> int: ...


def namespace_now(r: redis.Redis, keys: Keys, default: int | None = None) -> int | None:
    """The namespace's current time in epoch ms; `default` while it has no clock yet (a live
    namespace before its first tick)."""
    raw = r.get(keys.clock)
    return int(raw) if raw else default
