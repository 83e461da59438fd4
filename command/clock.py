"""A namespace's "now": the one way every decision reads the time.

A namespace's clock (``ecd:<ns>:clock``, epoch ms) is scenario time in a drill (the replay feed
moves it) and the last live tick in live operation (the engine's `--live-ticks` moves it). Deciding
"is this deadline past?" or "was this alert resolved recently?" reads it here, never the wall
clock, so a drill decides on scenario time at any replay speed. Only the live edges (the live tick,
the feeds, the drill registry's timestamps) read the wall clock (`timeutil.now_ms`).

Two readings, for two purposes:

- `namespace_now`: the clock as it is, None (or a default) before a live namespace's first tick. A
  decision that must not guess (is this deadline past?) waits for the clock.
- `command_time`: the time a command is stamped with (a dispatch, a task update, an operator's
  action, a reported incident). A namespace with no clock yet is live before its first tick, and
  live time *is* the wall clock (the live tick copies it), so a command there is stamped with the
  wall clock. This is the one place that decides it.
"""

from __future__ import annotations

from typing import overload

import redis

from command.keys import Keys
from command.timeutil import now_ms


@overload
def namespace_now(r: redis.Redis, keys: Keys) -> int | None: ...
@overload
def namespace_now(r: redis.Redis, keys: Keys, default: int) -> int: ...


def namespace_now(r: redis.Redis, keys: Keys, default: int | None = None) -> int | None:
    """The namespace's current time in epoch ms; `default` while it has no clock yet (a live
    namespace before its first tick)."""
    raw = r.get(keys.clock)
    return int(raw) if raw else default


def command_time(r: redis.Redis, keys: Keys) -> int:
    """The time to stamp a command with: the namespace's clock, or the wall clock while it has none
    (live before its first tick: the live edge's clock is the wall's)."""
    return namespace_now(r, keys, now_ms())
