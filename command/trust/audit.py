"""Append-only, hash-chained audit log of every command: who, what, when.

Each entry carries the hash of the previous one (`prev`) and its own (`hash` = sha256 over prev and
its canonical JSON body), so changing or removing an entry anywhere breaks the chain from there on.
`append()` queues onto a MULTI pipeline the caller is already WATCHing `audit_head` in, so the audit
entry lands in the same transaction as the command it records.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from command.keys import Keys

GENESIS = "0" * 64


def entry_hash(prev: str, body: bytes) -> str:
    return hashlib.sha256(prev.encode() + b"\n" + body).hexdigest()


def body_of(who: str, action: str, at: int, details: dict[str, Any]) -> bytes:
    return orjson.dumps({"who": who, "action": action, "at": at, "details": details},
                        option=orjson.OPT_SORT_KEYS)


def append(pipe: Any, keys: Keys, head: str | None, *, who: str, action: str, at: int,
           details: dict[str, Any]) -> str:
    """Queue one audit entry on `pipe` (in MULTI). `head` is the current chain head read under WATCH."""
    prev = head or GENESIS
    body = body_of(who, action, at, details)
    h = entry_hash(prev, body)
    pipe.xadd(keys.audit, {"prev": prev, "hash": h, "body": body})
    pipe.set(keys.audit_head, h)
    return h


def record(r: redis.Redis, keys: Keys, *, who: str, action: str, at: int, details: dict[str, Any]) -> str:
    """Append one audit entry on its own (for commands with no other write)."""
    with r.pipeline() as pipe:
        while True:
            try:
                pipe.watch(keys.audit_head)
                head = pipe.get(keys.audit_head)
                pipe.multi()
                h = append(pipe, keys, head.decode() if head else None, who=who, action=action, at=at,
                           details=details)
                pipe.execute()
                return h
            except redis.WatchError:
                continue


@dataclass
class Verification:
    ok: bool
    entries: int
    broken_at: str | None = None  # stream id of the first entry that does not chain
    reason: str = ""


def verify(r: redis.Redis, keys: Keys) -> Verification:
    """Walk the chain from the start; the first entry whose hash or link is wrong is reported."""
    prev = GENESIS
    n = 0
    start = "-"
    while True:
        chunk = r.xrange(keys.audit, min=start, count=1000)
        if not chunk:
            break
        for eid, f in chunk:
            n += 1
            if f.get(b"prev", b"").decode() != prev:
                return Verification(False, n, eid.decode(), "link to the previous entry does not match")
            h = entry_hash(prev, f[b"body"])
            if f.get(b"hash", b"").decode() != h:
                return Verification(False, n, eid.decode(), "entry content does not match its hash")
            prev = h
        ms, seq = chunk[-1][0].decode().split("-")
        start = f"{ms}-{int(seq) + 1}"
    head = r.get(keys.audit_head)
    if n and (head or b"").decode() != prev:
        return Verification(False, n, None, "the chain head does not match the last entry")
    return Verification(True, n)


def entries(r: redis.Redis, keys: Keys, count: int = 200) -> list[dict[str, Any]]:
    """The newest audit entries, newest first."""
    out = []
    for eid, f in r.xrevrange(keys.audit, count=count):
        body = orjson.loads(f[b"body"])
        body["id"] = eid.decode()
        out.append(body)
    return out
