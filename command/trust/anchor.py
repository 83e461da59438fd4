"""Anchors: each audit chain's head, copied outside Redis, so removing entries is noticed too.

The keyed chain (command/trust/audit.py) stops anyone without the key from rewriting, inserting or
reordering entries; but cutting the newest entries, or deleting the stream, leaves a shorter chain that
is still well-formed. So every few seconds (``ECD_AUDIT_ANCHOR_SECONDS``, at most 10) and when it stops,
the anchor loop (`python -m command audit anchor`, a child of `python app.py`) appends one JSON line per
namespace whose chain moved to ``<data_dir>/audit/anchors.jsonl`` (``ECD_AUDIT_ANCHORS``)::

    {"ns": "live", "id": "1719820800000-0", "hash": "<the entry's HMAC>", "count": 42, "at": 1719820801234}

written with O_APPEND and fsynced. `verify(..., anchors=read_anchors(path))` then requires entry #count to
be that id with that hash: fewer entries, or none, is reported as missing entries or a deleted trail.
The file is append-only and can be shipped elsewhere as it grows (see docs/security.md, "Audit trail").
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson
import redis

from command.keys import AUDIT_NAMESPACES, Keys
from command.timeutil import now_ms, to_iso

log = logging.getLogger(__name__)

TAIL_BYTES = 1 << 20  # how much of an existing file the loop reads at start to know what it anchored


@dataclass(frozen=True)
class Anchor:
    ns: str
    id: str  # stream id of the chain's newest entry
    hash: str  # that entry's hash
    count: int  # entries in the chain up to and including it
    at: int  # wall ms the anchor was taken

    def when(self) -> str:
        return (to_iso(self.at) or "")[:19].replace("T", " ") + " UTC"

    def line(self) -> bytes:
        return orjson.dumps(asdict(self)) + b"\n"

    @classmethod
    def parse(cls, line: bytes) -> Anchor:
        d = orjson.loads(line)
        a = cls(ns=str(d["ns"]), id=str(d["id"]), hash=str(d["hash"]), count=int(d["count"]), at=int(d["at"]))
        if a.count < 1:
            raise ValueError("count < 1")
        return a


def read_anchors(path: Path, ns: str | None = None, *, tail: int | None = None) -> list[Anchor]:
    """The anchors in `path` (of namespace `ns` when given), oldest first; a missing file has none.

    A line that cannot be read is skipped with a warning (the last one may be torn by a crash)."""
    try:
        with open(path, "rb") as fh:
            if tail is not None:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - tail))
                if size > tail:
                    fh.readline()  # a partial line
            data = fh.read()
    except FileNotFoundError:
        return []
    out = []
    for i, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            a = Anchor.parse(line)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("%s: line %d is not an anchor, skipped", path, i)
            continue
        if ns is None or a.ns == ns:
            out.append(a)
    return out


def write_anchors(path: Path, anchors: Iterable[Anchor]) -> int:
    """Append anchors to `path` (made 0600 with its folder if need be) and fsync; returns the file's inode."""
    data = b"".join(a.line() for a in anchors)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        if data:
            os.write(fd, data)  # one write with O_APPEND: lines of two writers never interleave
            os.fsync(fd)
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def head(r: redis.Redis, keys: Keys) -> Anchor | None:
    """The chain's newest entry and its length, read together; None when the namespace has no trail."""
    with r.pipeline(transaction=True) as pipe:
        pipe.xrevrange(keys.audit, count=1)
        pipe.xlen(keys.audit)
        newest, count = pipe.execute()
    if not newest:
        return None
    eid, f = newest[0]
    return Anchor(keys.ns, eid.decode(), f.get(b"hash", b"").decode(), int(count), now_ms())


def audited_namespaces(r: redis.Redis) -> list[Keys]:
    out = []
    for raw in sorted(r.smembers(AUDIT_NAMESPACES)):
        try:
            out.append(Keys(raw.decode()))
        except ValueError:
            continue
    return out


def register_existing(r: redis.Redis) -> int:
    """Add to AUDIT_NAMESPACES the trails written before it existed (one SCAN, at the loop's start)."""
    found = set()
    for key in r.scan_iter(match="ecd:*:audit", count=1000, _type="STREAM"):
        found.add(key.decode().split(":")[1].strip("{}"))  # `ecd:{ns}:audit`: the namespace is the hash tag
    if found:
        r.sadd(AUDIT_NAMESPACES, *found)
    return len(found)


class Anchorer:
    """Appends each audited namespace's head to the anchors file when it has moved since the last one."""

    def __init__(self, r: redis.Redis, path: Path) -> None:
        self.r = r
        self.path = Path(path)
        self.written = 0
        self._inode: int | None = None
        self._last: dict[str, tuple[str, int]] = {}
        for a in read_anchors(self.path, tail=TAIL_BYTES):
            self._last[a.ns] = (a.hash, a.count)
        if self._last:
            self._inode = self._file_inode()

    def _file_inode(self) -> int | None:
        try:
            return self.path.stat().st_ino
        except FileNotFoundError:
            return None

    def tick(self) -> list[Anchor]:
        """Anchor every namespace whose chain moved; all of them again if the file was moved away."""
        if self._inode is not None and self._file_inode() != self._inode:
            log.info("%s was moved or replaced: anchoring every trail again", self.path)
            self._last.clear()
        new = []
        for keys in audited_namespaces(self.r):
            a = head(self.r, keys)
            if a is not None and self._last.get(a.ns) != (a.hash, a.count):
                new.append(a)
        if new or self._inode is None:
            self._inode = write_anchors(self.path, new)
        for a in new:
            self._last[a.ns] = (a.hash, a.count)
        self.written += len(new)
        return new

    def run(self, stop: threading.Event, interval: float) -> None:
        """Tick every `interval` seconds until `stop`, then once more (so a shutdown is anchored)."""
        try:
            register_existing(self.r)
        except redis.RedisError as exc:
            log.warning("cannot list the existing trails yet: %s", exc)
        while True:
            stopping = stop.is_set()
            try:
                self.tick()
            except redis.RedisError as exc:  # Redis restarting: try again at the next tick
                log.warning("audit anchor skipped: %s", exc)
            if stopping:
                return
            stop.wait(interval)
