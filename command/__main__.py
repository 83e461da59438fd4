"""Command line: `python -m command replay|engine|export|audit ...`.

Exit status: 0 on success, 2 on bad input (a malformed scenario, a bad option), 1 on other errors.

Errors are translated here, once (`main`): a `command.errors.CommandError` prints ``error: <message>``
(and a line per field when several are wrong) on standard error and exits with its ``exit_code``
(2 bad input, 1 a conflict, 75 Redis or another dependency unavailable); Redis going away surfaces
as `command.errors.Unavailable` (`unavailable_from`). A subcommand never prints its own errors.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from command.config import Settings
from command.errors import CommandError, InvalidInput, unavailable_from
from command.runtime.redis_server import RedisStartError, redis_for
from command.scenarios.load import ScenarioError


def _speed(text: str) -> float | None:
    from command.scenarios.clock import parse_speed

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

    sub.add_parser("drills", help="run the drill runner (the exercise page's replays) until stopped")
    wp = sub.add_parser("worker", help="run an RQ worker for background jobs (acknowledgement timers)")
    wp.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    wp.add_argument("--backtests", action="store_true",
                    help="work the backtests' queue instead (a worker of their own: they run for minutes)")

    xp = sub.add_parser("export", help="write a namespace's alerts and after-action report")
    xp.add_argument("--namespace", required=True)
    xp.add_argument("--out", type=Path, required=True)
    from feeds.cli import register as register_feeds

    register_feeds(sub)  # `feeds parse|run` and `record` (feeds/cli.py)
    from command.trust.cli import register as register_accounts

    register_accounts(sub)  # `users add|remove|unlock|sign-out|list`, `tokens add|list|revoke` (command/trust/cli.py)
    from command.trust.audit_cli import register as register_audit

    register_audit(sub)  # `audit verify|anchor|rotate-key` (command/trust/audit_cli.py)
    from command.scenarios.backtest import register as register_backtest

    register_backtest(sub)  # `backtest` (command/scenarios/backtest.py)
    return p


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from command.scenarios.replay import Progress, run_replay

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
    from command.engine.consumer import Engine
    from command.keys import Keys

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def started(eng: Engine) -> None:
        print(f"engine {eng.consumer} on namespace {eng.keys.ns}: shards {sorted(eng.shards)} of {eng.nshards}",
              flush=True)

    with redis_for(settings, purpose="loop") as r:  # command/runtime/redis_client.py: never re-sends blindly
        eng = Engine(r, Keys(args.namespace or settings.namespace), consumer=args.consumer,
                     batch=args.batch or settings.engine_batch, block_ms=settings.engine_block_ms,
                     lease_ms=settings.lease_ms, max_shards=args.max_shards,
                     live_tick_s=settings.tick_seconds if args.live_ticks else None,
                     trim_every_s=settings.trim_seconds)
        eng.run(stop, exit_when_idle=args.exit_when_idle, on_start=started)
        print(f"engine {eng.consumer} stopped after {eng.processed} entries", flush=True)
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from command.keys import Keys
    from command.publish.report import write_outputs

    with redis_for(settings) as r:
        rep = write_outputs(r, Keys(args.namespace), args.out)
    print(f"wrote {rep['totals']['alerts']} alerts to {args.out}")
    return 0


def cmd_drills(args: argparse.Namespace, settings: Settings) -> int:
    from command.ops.drills import DrillRunner

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with redis_for(settings, purpose="loop") as r:
        print("drill runner started", flush=True)
        DrillRunner(r).run(stop)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from command.ops.jobs import run_worker
    from command.runtime.redis_client import RqOnCluster, client, rq_url
    from command.runtime.redis_server import redis_url_for

    with redis_url_for(settings) as url:  # RQ's client (its own plain Redis beside a cluster), and the sweep's
        try:
            queue_url = rq_url(settings, url)
        except RqOnCluster as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return run_worker(client(queue_url, "app", settings=settings), client(url, "loop", settings=settings),
                          burst=args.burst, backtests=args.backtests)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    handler = {"replay": cmd_replay, "engine": cmd_engine, "export": cmd_export, "drills": cmd_drills,
               "worker": cmd_worker}.get(args.cmd) or args.handler
    try:
        return handler(args, settings)
    except CommandError as exc:
        return report_error(exc)
    except RedisStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - only Redis going away is translated; anything else is a bug
        down = unavailable_from(exc)
        if down is None:
            raise
        return report_error(down)


def report_error(exc: CommandError) -> int:
    """The CLI's one translation of a domain error: ``error: <message>`` on standard error (a
    malformed scenario says so first), a line per field when an InvalidInput names several, and
    the error's exit code."""
    what = "bad scenario: " if isinstance(exc, ScenarioError) else ""
    print(f"error: {what}{exc.message}", file=sys.stderr)
    if isinstance(exc, InvalidInput) and len(exc.errors) > 1:
        for field, message in exc.errors.items():
            print(f"  {field}: {message}", file=sys.stderr)
    return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
