"""`python -m command audit verify|anchor|rotate-key` (registered by command/__main__.py).

- ``verify [--namespace NS | --all] [--anchors FILE]``: walk the chain and check it against the anchors.
  Exit 0: intact (or legacy, or empty); 1: broken or missing entries, the first one named with its
  reason; 2: bad usage (an invalid namespace, an anchors file that does not exist).
- ``anchor [--interval S] [--once]``: the anchor loop (`python app.py` runs it); SIGTERM anchors once
  more, then exits 0.
- ``rotate-key``: retire the current audit key into the keyring, make a new one.
"""

from __future__ import annotations

import argparse
import getpass
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from command.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("audit", help="the audit trail: verify it, anchor it, rotate its key")
    asub = ap.add_subparsers(dest="audit_cmd", required=True)

    vp = asub.add_parser("verify", help="check a namespace's audit chain and its anchors (exit 0 intact, 1 broken)")
    which = vp.add_mutually_exclusive_group()
    which.add_argument("--namespace", default=None, help="the namespace (default ECD_NAMESPACE: live)")
    which.add_argument("--all", action="store_true", help="every namespace with a trail or an anchor")
    vp.add_argument("--anchors", type=Path, default=None,
                    help="anchors file (default ECD_AUDIT_ANCHORS, else DATA_DIR/audit/anchors.jsonl)")
    vp.set_defaults(handler=cmd_verify)

    np_ = asub.add_parser("anchor", help="copy each chain's head to the anchors file every few seconds, until stopped")
    np_.add_argument("--interval", type=float, default=None, help="seconds (default ECD_AUDIT_ANCHOR_SECONDS: 5)")
    np_.add_argument("--anchors", type=Path, default=None, help="anchors file (default as for verify)")
    np_.add_argument("--once", action="store_true", help="anchor once and exit")
    np_.set_defaults(handler=cmd_anchor)

    rp = asub.add_parser("rotate-key", help="retire the audit key into the keyring and make a new one")
    rp.set_defaults(handler=cmd_rotate_key)


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from command.errors import CommandError
    from command.keys import AUDIT_NAMESPACES, Keys
    from command.runtime.redis_server import redis_for
    from command.trust import audit
    from command.trust.anchor import read_anchors

    try:
        chosen = Keys(args.namespace or settings.namespace)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = args.anchors or settings.audit_anchors_file
    if args.anchors is not None and not args.anchors.is_file():
        print(f"error: no anchors file {args.anchors}", file=sys.stderr)
        return 2
    anchors = read_anchors(path)  # before the walk: an anchor written during it would name unwalked entries
    if not anchors:
        print(f"warning: no anchors in {path}: removing the newest entries, or the whole trail, cannot be "
              "detected", file=sys.stderr)
    store = audit.configure(settings.data_dir)
    status = 0
    with redis_for(settings) as r:
        if args.all:
            names = {a.ns for a in anchors} | {m.decode() for m in r.smembers(AUDIT_NAMESPACES)}
            names |= {k.decode().split(":")[1].strip("{}") for k in r.scan_iter(match="ecd:*:audit", count=1000, _type="STREAM")}
            targets = []
            for name in sorted(names):
                try:
                    targets.append(Keys(name))
                except ValueError:
                    continue
        else:
            targets = [chosen]
        for keys in targets:
            try:
                v = audit.verify(r, keys, anchors=anchors, store=store)
            except CommandError as exc:  # the key cannot be read
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(f"{keys.ns}: {v.describe()}", flush=True)
            if not v.ok:
                status = 1
    return status


def cmd_anchor(args: argparse.Namespace, settings: Settings) -> int:
    from command.runtime.redis_server import redis_for
    from command.trust.anchor import Anchorer

    interval = args.interval or settings.audit_anchor_seconds
    if not 0 < interval <= 10:
        print("error: --interval must be more than 0 and at most 10 seconds", file=sys.stderr)
        return 2
    path = args.anchors or settings.audit_anchors_file
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with redis_for(settings) as r:
        anchorer = Anchorer(r, path)
        if args.once:
            stop.set()
        else:
            print(f"audit anchors every {interval:g} s to {path}", flush=True)
        anchorer.run(stop, interval)
        print(f"audit anchor loop stopped: {anchorer.written} anchors written", flush=True)
    return 0


def cmd_rotate_key(args: argparse.Namespace, settings: Settings) -> int:
    import redis

    from command.errors import CommandError
    from command.keys import Keys
    from command.runtime.redis_server import RedisStartError, redis_for
    from command.timeutil import now_ms
    from command.trust import audit, audit_keys

    store = audit.configure(settings.data_dir)
    try:
        old, new = store.rotate(now_ms())
    except (CommandError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if new is None:
        print(f"{audit_keys.KEY_ENV} (key {old}) is kept in {store.keyring_path}: now set {audit_keys.KEY_ENV} to a new "
              "value of at least 32 characters (e.g. python -c 'import secrets; print(secrets.token_hex(32))') "
              "and restart")
        return 0
    print(f"audit key {old} retired into {store.keyring_path}; new key {new} in {store.key_path} "
          "(running processes take it at their next entry)")
    try:  # the switch itself goes on the record, sealed with the new key
        with redis_for(settings) as r:
            audit.record(r, Keys(settings.namespace), who=f"cli:{getpass.getuser()}", action="audit_key_rotate",
                         at=now_ms(), details={"retired": old, "new": new})
    except (redis.RedisError, RedisStartError) as exc:
        print(f"warning: the rotation could not be recorded in the trail: {exc}", file=sys.stderr)
    return 0
