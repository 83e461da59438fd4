"""Command line: `python -m command replay|engine|export ...`.

Exit status: 0 on success, 2 on bad input (a malformed scenario, a bad option), 1 on other errors.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .config import Settings
from .redis_server import RedisStartError, redis_for
from .scenario import ScenarioError


def _speed(text: str) -> float | None:
    from feeds.replay import parse_speed

    try:
        return parse_speed(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid speed {text!r}: a positive number (1, 10, 60) or 'max'") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m command", description="Flood command: pipeline tools")
    p.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = p.add_subparsers(dest="cmd", required=True)

    rp = sub.add_parser("replay", help="replay a scenario folder through the whole pipeline, headless")
    rp.add_argument("scenario", type=Path, help="scenario folder (see docs/scenarios.md)")
    rp.add_argument("--speed", type=_speed, default=None, help="1, 10, 60 ... or max (default max)")
    rp.add_argument("--out", type=Path, help="write alerts.jsonl, recommendations.jsonl, quarantine.jsonl, after_action.*")
    rp.add_argument("--namespace", help="key namespace (default: a new drill-<scenario>-<id>)")
    rp.add_argument("--shards", type=int, default=None, help="number of reading shards (default from settings: 1)")
    rp.add_argument("--no-engine", action="store_true",
                    help="only publish to the streams; engines started with `engine` evaluate")
    rp.add_argument("--discard", action="store_true", help="delete the namespace's keys after writing --out")
    rp.add_argument("--quiet", action="store_true", help="no progress line")

    ep = sub.add_parser("engine", help="run a rule engine consumer on a namespace until stopped")
    ep.add_argument("--namespace", default=None)
    ep.add_argument("--max-shards", type=int, default=None, help="own at most this many shards")
    ep.add_argument("--batch", type=int, default=None)
    ep.add_argument("--consumer", default=None, help="consumer name (default host-pid-random)")
    ep.add_argument("--live-ticks", action="store_true", help="emit wall-clock ticks (live operation)")
    ep.add_argument("--exit-when-idle", type=float, default=None, metavar="SECONDS",
                    help="stop after this long with nothing to do (for batch use)")

    xp = sub.add_parser("export", help="write a namespace's alerts and after-action report")
    xp.add_argument("--namespace", required=True)
    xp.add_argument("--out", type=Path, required=True)
    return p


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from .pipeline import Progress, run_replay

    with redis_for(settings) as r:
        progress = None if args.quiet else Progress(sys.stderr)
        res = run_replay(r, args.scenario, speed=args.speed, out=args.out, namespace=args.namespace,
                         shards=args.shards or settings.shards, run_engine=not args.no_engine,
                         keep=not args.discard, batch=settings.engine_batch, progress=progress)
    print(f"replayed {res.readings} readings ({res.entries} stream entries) of {args.scenario} "
          f"in {res.seconds:.1f} s: {res.alerts} alerts, namespace {res.namespace}")
    if args.out:
        print(f"wrote {args.out}/alerts.jsonl, recommendations.jsonl, quarantine.jsonl, after_action.json, after_action.html")
    return 0


def cmd_engine(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from .engine import Engine
    from .keys import Keys

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with redis_for(settings) as r:
        eng = Engine(r, Keys(args.namespace or settings.namespace), consumer=args.consumer,
                     batch=args.batch or settings.engine_batch, block_ms=settings.engine_block_ms,
                     lease_ms=settings.lease_ms, max_shards=args.max_shards,
                     live_tick_s=settings.tick_seconds if args.live_ticks else None)
        eng.start()
        print(f"engine {eng.consumer} on namespace {eng.keys.ns}: shards {sorted(eng.shards)} of {eng.nshards}",
              flush=True)
        idle_since = time.monotonic()
        try:
            while not stop.is_set():
                if eng.poll(block_ms=settings.engine_block_ms):
                    idle_since = time.monotonic()
                elif args.exit_when_idle is not None and time.monotonic() - idle_since > args.exit_when_idle:
                    break
        finally:
            eng.release()
        print(f"engine {eng.consumer} stopped after {eng.processed} entries", flush=True)
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from .keys import Keys
    from .report import write_outputs

    with redis_for(settings) as r:
        rep = write_outputs(r, Keys(args.namespace), args.out)
    print(f"wrote {rep['totals']['alerts']} alerts to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    handler = {"replay": cmd_replay, "engine": cmd_engine, "export": cmd_export}[args.cmd]
    try:
        return handler(args, settings)
    except ScenarioError as exc:
        print(f"error: bad scenario: {exc}", file=sys.stderr)
        return 2
    except RedisStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
