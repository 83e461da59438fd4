"""Append-only, keyed, hash-chained audit log of every command: who, what, when.

Each entry is a stream entry of the namespace's `Keys.audit` with the fields

- ``body``: canonical JSON ``{who, action, at, details}`` (``at`` is the namespace's time);
- ``prev``: the previous entry's ``hash`` (``GENESIS`` for the first);
- ``kid``:  the id of the key that sealed it;
- ``hash``: HMAC-SHA256(key[kid], prev ⏎ kid ⏎ body).

The key is never in Redis: it comes from ``ECD_AUDIT_KEY`` or from ``<data_dir>/audit_key`` (made once,
mode 0600); retired keys stay in ``<data_dir>/audit_keyring`` so entries they sealed keep verifying
(`rotate_key`). Someone who can write Redis but cannot read the data folder can neither rewrite an
entry (they cannot recompute the HMAC) nor insert, reorder or remove one in the middle (the links
break). Removing the *newest* entries, or the whole stream, leaves a shorter but well-formed chain:
that is caught by the anchors, the chain's head copied outside Redis every few seconds
(command/trust/anchor.py), which `verify` checks when given them.

Entries written before the chain was keyed have no ``kid`` and a plain SHA-256 ``hash``: they verify as
*legacy*. A legacy entry after a keyed one is refused (that is a rewrite without the key), and the
first keyed entry seals every legacy entry before it through its ``prev``.

`append()` queues onto a MULTI pipeline the caller is already WATCHing `audit_head` in, so the audit
entry lands in the same transaction as the command it records; `record()` appends one on its own.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import redis

from command.keys import AUDIT_NAMESPACES, Keys
from command.trust.audit_keys import KeyStore

if TYPE_CHECKING:
    from command.trust.anchor import Anchor

log = logging.getLogger(__name__)

GENESIS = "0" * 64
READ_ACTION = "read_secret"  # the action of `record_read` entries


_store: KeyStore | None = None
_store_lock = threading.Lock()


def configure(data_dir: Path) -> KeyStore:
    """Use the keys of `data_dir` in this process (the web app calls this with its settings)."""
    global _store
    with _store_lock:
        if _store is None or _store.data_dir != Path(data_dir):
            _store = KeyStore(Path(data_dir))
        return _store


def key_store() -> KeyStore:
    """This process's key store: `configure()`'s, else the settings' data folder (ECD_DATA_DIR)."""
    if _store is None:
        from command.config import Settings

        return configure(Settings().data_dir)
    return _store


# ---- writing ---------------------------------------------------------------------------------------------
def legacy_hash(prev: str, body: bytes) -> str:
    """The hash of an entry written before the chain was keyed (plain SHA-256)."""
    return hashlib.sha256(prev.encode() + b"\n" + body).hexdigest()



def keyed_hash(key: bytes, kid: str, prev: str, body: bytes) -> str:
    return hmac.new(key, prev.encode() + b"\n" + kid.encode() + b"\n" + body, hashlib.sha256).hexdigest()


def body_of(who: str, action: str, at: int, details: dict[str, Any]) -> bytes:
    return orjson.dumps({"who": who, "action": action, "at": at, "details": details},
                        option=orjson.OPT_SORT_KEYS)


def append(pipe: Any, keys: Keys, head: str | None, *, who: str, action: str, at: int,
           details: dict[str, Any]) -> str:
    """Queue one audit entry on `pipe` (in MULTI). `head` is the current chain head read under WATCH."""
    kid, key = key_store().current()
    prev = head or GENESIS
    body = body_of(who, action, at, details)
    h = keyed_hash(key, kid, prev, body)
    pipe.xadd(keys.audit, {"prev": prev, "hash": h, "kid": kid, "body": body})
    pipe.set(keys.audit_head, h)
    pipe.sadd(AUDIT_NAMESPACES, keys.ns)  # the anchor loop finds the namespaces with a trail here
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


def record_read(r: redis.Redis, keys: Keys, who: str, what: str, details: dict[str, Any] | None = None, *,
                at: int | None = None) -> str:
    """Audit that `who` read the secret field `what` (e.g. "incident.reporter_phone"); `details` says
    which record (ids, never the secret's value). `at` defaults to the namespace's time (wall time
    when it has no clock yet)."""
    if at is None:
        from command.clock import namespace_now
        from command.timeutil import now_ms

        at = namespace_now(r, keys) or now_ms()
    return record(r, keys, who=who, action=READ_ACTION, at=at, details={**(details or {}), "what": what})


# ---- verifying -------------------------------------------------------------------------------------------
@dataclass
class Verification:
    ok: bool
    entries: int
    broken_at: str | None = None  # stream id of the first entry that is wrong or missing
    reason: str = ""
    legacy: int = 0  # entries sealed with a plain SHA-256 (before the chain was keyed)
    anchors: int = 0  # anchors checked against the chain
    head_id: str | None = None  # the newest entry's id
    kids: list[str] = field(default_factory=list)  # the key ids met, in order of first use

    @property
    def state(self) -> str:
        """"intact", "legacy" (intact, with entries from before the key), "broken" or "empty"."""
        if not self.ok:
            return "broken"
        if not self.entries:
            return "empty"
        return "legacy" if self.legacy else "intact"

    def describe(self) -> str:
        if not self.ok:
            where = f"entry {self.broken_at}" if self.broken_at else "the chain head"
            return f"BROKEN at {where}: {self.reason}"
        anchored = f", {self.anchors} anchors agree" if self.anchors else ", no anchors checked"
        if self.state == "legacy":
            return (f"LEGACY: {self.entries} entries chain correctly; {self.legacy} were written before the "
                    f"chain was keyed (plain SHA-256){anchored}")
        return f"{self.state.upper()}: {self.entries} entries{anchored}"


def _id_tuple(eid: str) -> tuple[int, int]:
    ms, seq = eid.split("-")
    return int(ms), int(seq)


def _next_id(eid: str) -> str:
    ms, seq = eid.split("-")
    return f"{ms}-{int(seq) + 1}"


def verify(r: redis.Redis, keys: Keys, *, anchors: Iterable[Anchor] | None = None,
           store: KeyStore | None = None) -> Verification:
    """Walk the chain from the start; report the first entry that is wrong, or missing against `anchors`.

    Read the anchors *before* calling (an anchor written meanwhile would name an entry not yet walked).
    """
    store = store or key_store()
    known = store.known()
    want: dict[int, list[Anchor]] = {}
    for a in anchors or ():
        if a.ns == keys.ns:
            want.setdefault(a.count, []).append(a)
    checked = 0
    prev, n, legacy, keyed_from = GENESIS, 0, 0, None
    kids: list[str] = []
    start, last = "-", None
    while True:
        chunk = r.xrange(keys.audit, min=start, count=1000)
        if not chunk:
            # the end, unless entries were added since the walk began: the head is read with the newest id
            with r.pipeline(transaction=True) as pipe:
                pipe.get(keys.audit_head)
                pipe.xrevrange(keys.audit, count=1)
                head, newest = pipe.execute()
            if newest and (last is None or _id_tuple(newest[0][0].decode()) > _id_tuple(last)):
                continue  # entries were added while we walked: walk them too
            break
        for raw_id, f in chunk:
            eid = raw_id.decode()
            n += 1
            if f.get(b"prev", b"").decode() != prev:
                return Verification(False, n, eid, "the link to the previous entry does not match "
                                    "(an entry before it was removed, or this one was moved)", legacy, checked)
            body = f.get(b"body", b"")
            kid = f.get(b"kid", b"").decode()
            if not kid:
                if keyed_from is not None:
                    return Verification(False, n, eid, "an unkeyed entry after keyed ones (from "
                                        f"{keyed_from}): it was rewritten without the key", legacy, checked)
                legacy += 1
                h = legacy_hash(prev, body)
            else:
                key = known.get(kid)
                if key is None:
                    return Verification(False, n, eid, f"sealed with an unknown key {kid!r} (forged, or the "
                                        "key is missing from the keyring)", legacy, checked)
                keyed_from = keyed_from or eid
                if kid not in kids:
                    kids.append(kid)
                h = keyed_hash(key, kid, prev, body)
            if not hmac.compare_digest(f.get(b"hash", b"").decode(), h):
                return Verification(False, n, eid, "the entry's content does not match its "
                                    + ("HMAC" if kid else "hash"), legacy, checked)
            for a in want.pop(n, ()):
                checked += 1
                if a.id != eid or a.hash != h:
                    return Verification(False, n, eid, f"entry #{n} differs from the anchor of {a.when()} "
                                        f"(anchored {a.id}, hash {a.hash[:12]}…): the trail was replaced",
                                        legacy, checked)
            prev, last = h, eid
        start = _next_id(last)  # type: ignore[arg-type]
    if want:  # anchors name entries past the end: the newest entries, or the whole trail, are gone
        count = min(want)
        a = want[count][0]
        top = max(want)
        checked += sum(len(v) for v in want.values())
        if n == 0:
            reason = (f"the trail is gone: anchors record {top} entries (the last anchored {want[top][0].id} "
                      f"at {want[top][0].when()}) and the stream is empty")
        else:
            reason = (f"entries #{n + 1}–#{top} are missing: the anchor of {a.when()} records entry {a.id} as "
                      f"#{count}, the trail ends at #{n} ({last})")
        return Verification(False, n, a.id, reason, legacy, checked, last, kids)
    if not n and head:
        return Verification(False, 0, None, "the trail is gone: the stream is empty but its chain head remains",
                            legacy, checked)
    if n and (head or b"").decode() != prev:
        return Verification(False, n, None, "the chain head does not match the last entry", legacy, checked,
                            last, kids)
    return Verification(True, n, legacy=legacy, anchors=checked, head_id=last, kids=kids)


# ---- reading ---------------------------------------------------------------------------------------------
def entries(r: redis.Redis, keys: Keys, count: int = 200) -> list[dict[str, Any]]:
    """The newest audit entries, newest first."""
    out = []
    for eid, f in r.xrevrange(keys.audit, count=count):
        body = orjson.loads(f[b"body"])
        body["id"] = eid.decode()
        out.append(body)
    return out


def iter_entries(r: redis.Redis, keys: Keys, chunk: int = 1000) -> Iterator[dict[str, Any]]:
    """Every entry, oldest first: its body, ``id`` (stream id), ``recorded`` (the id's wall ms), ``kid``."""
    start = "-"
    while True:
        batch = r.xrange(keys.audit, min=start, count=chunk)
        if not batch:
            return
        for raw_id, f in batch:
            eid = raw_id.decode()
            try:
                body = orjson.loads(f[b"body"])
            except (KeyError, orjson.JSONDecodeError):
                body = {"who": "", "action": "?", "at": 0, "details": {}}
            body.update(id=eid, recorded=int(eid.split("-")[0]), kid=f.get(b"kid", b"").decode() or "legacy")
            yield body
        start = _next_id(batch[-1][0].decode())


@dataclass
class Filter:
    """What the audit page and its CSV export search for; empty fields match everything."""

    user: str = ""
    department: str = ""
    action: str = ""
    since: int | None = None  # `at` (namespace time, ms), inclusive
    until: int | None = None  # exclusive

    def matches(self, e: dict[str, Any], department_of: Callable[[str], str]) -> bool:
        if self.user and self.user.lower() not in str(e.get("who", "")).lower():
            return False
        if self.action and e.get("action") != self.action:
            return False
        at = e.get("at")
        if self.since is not None and (not isinstance(at, int) or at < self.since):
            return False
        if self.until is not None and (not isinstance(at, int) or at >= self.until):
            return False
        return not self.department or department_of(str(e.get("who", ""))) == self.department


def search(r: redis.Redis, keys: Keys, flt: Filter, department_of: Callable[[str], str]) -> Iterator[dict[str, Any]]:
    """The entries `flt` matches, oldest first, each with its ``department``."""
    for e in iter_entries(r, keys):
        if flt.matches(e, department_of):
            e["department"] = department_of(str(e.get("who", "")))
            yield e
