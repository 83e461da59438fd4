"""Keys written before the namespace became a hash tag (``ecd:<ns>:<name>``, now ``ecd:{<ns>}:<name>``,
command/keys.py) are renamed once, at the supervisor's start, so an upgraded server keeps its data.

Only a single server can hold such keys (the old layout never ran on a Redis Cluster). Global keys
are left alone: their segment after the prefix is reserved (`RESERVED_NAMESPACES`). RENAMENX never
overwrites a key the new layout has written already; a key in both layouts keeps the new one.
"""

from __future__ import annotations

import logging
from typing import Any

from command.keys import _NS_RE, PREFIX, RESERVED_NAMESPACES
from command.runtime.redis_client import on_cluster

log = logging.getLogger(__name__)


def rename_untagged(r: Any) -> int:
    """Rename every ``ecd:<ns>:<rest>`` to ``ecd:{<ns>}:<rest>``; returns how many were renamed."""
    if on_cluster(r):
        return 0
    renamed = 0
    for raw in r.scan_iter(match=f"{PREFIX}:*", count=1000):
        key = raw.decode(errors="replace")
        parts = key.split(":", 2)
        if len(parts) < 3 or parts[1].startswith("{") or parts[1] in RESERVED_NAMESPACES:
            continue
        if not _NS_RE.fullmatch(parts[1]):
            continue
        if r.renamenx(raw, f"{PREFIX}:{{{parts[1]}}}:{parts[2]}"):
            renamed += 1
    if renamed:
        log.warning("renamed %d keys to the hash-tagged namespace layout (ecd:{ns}:...)", renamed)
    return renamed
