"""Every Redis key and stream name, built in one place.

Layout (``ecd`` is the product prefix, ``ns`` the namespace: ``live`` or one per drill/replay):

- shard keys carry ``{ns:sN}`` as a Redis Cluster hash tag, so a shard's input stream and the
  rule state that resumes it always live in one slot: ``ecd:{ns:s0}:readings``, ``ecd:{ns:s0}:state``;
- everything else is ``ecd:ns:<name>``.

A namespace never shares a key with another, so a drill cannot touch live data.
"""

from __future__ import annotations

import re
import zlib

PREFIX = "ecd"
ENGINE_GROUP = "engine"
_NS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def shard_of(subject_id: str, shards: int) -> int:
    """The shard of a station or incident: stable across processes and machines (crc32, not hash())."""
    if shards == 1:
        return 0
    return zlib.crc32(subject_id.encode()) % shards


class Keys:
    """Key builder for one namespace."""

    __slots__ = ("ns", "_p")

    def __init__(self, namespace: str = "live") -> None:
        if not _NS_RE.match(namespace):
            raise ValueError(f"invalid namespace {namespace!r}: letters, digits, '_', '-', '.' only")
        self.ns = namespace
        self._p = f"{PREFIX}:{namespace}"

    # --- sharded input: readings, incidents and clock ticks -------------------------------------
    def shard_stream(self, shard: int) -> str:
        return f"{PREFIX}:{{{self.ns}:s{shard}}}:readings"

    def shard_state(self, shard: int) -> str:
        """Hash: rule-state field per station/incident, plus the shard's clock fields."""
        return f"{PREFIX}:{{{self.ns}:s{shard}}}:state"

    def shard_lease(self, shard: int) -> str:
        return f"{PREFIX}:{{{self.ns}:s{shard}}}:lease"

    # --- namespace metadata -----------------------------------------------------------------------
    @property
    def meta(self) -> str:
        """Hash: shards, scenario name, start, timezone, mode (live/exercise)."""
        return f"{self._p}:meta"

    @property
    def clock(self) -> str:
        """String: the namespace's current clock, epoch ms (scenario time in a drill)."""
        return f"{self._p}:clock"

    @property
    def stations(self) -> str:
        return f"{self._p}:stations"

    @property
    def zones(self) -> str:
        return f"{self._p}:zones"

    @property
    def resources(self) -> str:
        return f"{self._p}:resources"

    @property
    def rules(self) -> str:
        return f"{self._p}:rules"

    # --- outputs ----------------------------------------------------------------------------------
    @property
    def alerts_stream(self) -> str:
        return f"{self._p}:alerts"

    def alert(self, fingerprint: str) -> str:
        return f"{self._p}:alert:{fingerprint}"

    @property
    def alerts_open(self) -> str:
        """Sorted set of open alert fingerprints, scored by opening time."""
        return f"{self._p}:alerts:open"

    @property
    def alerts_index(self) -> str:
        """Sorted set of every alert fingerprint ever opened, scored by opening time."""
        return f"{self._p}:alerts:index"

    @property
    def recommendations_stream(self) -> str:
        return f"{self._p}:recommendations"

    def recommendation(self, fingerprint: str) -> str:
        """String: the latest recommendation (JSON) for an alert."""
        return f"{self._p}:rec:{fingerprint}"

    @property
    def deadletter(self) -> str:
        """Stream of rejected input: source, raw record, reason."""
        return f"{self._p}:deadletter"

    @property
    def events(self) -> str:
        """Stream of applied injects and other scenario events (for the after-action timeline)."""
        return f"{self._p}:events"

    def pattern(self) -> list[str]:
        """Glob patterns matching every key of this namespace (for cleanup)."""
        return [f"{self._p}:*", f"{PREFIX}:{{{self.ns}:s*}}:*"]
