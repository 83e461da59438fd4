"""`python -m command feeds parse|run` and `python -m command record` (registered by command/__main__.py).

Exit status: 0 on success; 1 when a payload could not be read at all (or a run failed); 2 on bad
usage (an unknown source, a missing file, a bad feeds.yaml).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .source import ParseResult

PARSE_SOURCES = ("usgs", "ea", "open-meteo", "nws", "cap")


def register(sub: argparse._SubParsersAction) -> None:
    fp = sub.add_parser("feeds", help="live feeds: parse a saved payload, or run the enabled sources")
    fsub = fp.add_subparsers(dest="feeds_cmd", required=True)

    pp = fsub.add_parser("parse", help="print what an adapter makes of a saved response, as JSON lines")
    pp.add_argument("source", choices=PARSE_SOURCES)
    pp.add_argument("file", type=Path, help="a saved response body ('-' for standard input)")
    pp.add_argument("--point", help="open-meteo: the point's name (station id om:<point>)")
    pp.add_argument("--issued", help="open-meteo: the run's issue time, ISO 8601 with an offset")
    pp.add_argument("--no-stations", action="store_true", help="leave station records out")
    pp.set_defaults(handler=cmd_parse)

    rp = fsub.add_parser("run", help="poll the enabled sources of feeds.yaml into a namespace until stopped")
    rp.add_argument("--config", type=Path, default=None, help="feeds configuration (default feeds.yaml)")
    rp.add_argument("--namespace", default=None, help="namespace (default ECD_NAMESPACE: live)")
    rp.add_argument("--sources", default=None, help="comma-separated source names (default: the enabled ones)")
    rp.add_argument("--rules", type=Path, default=None, help="rules to load into the namespace")
    rp.add_argument("--zones", type=Path, default=None, help="zones.geojson to load into the namespace")
    rp.add_argument("--once", action="store_true", help="poll each source once, print a summary, exit")
    rp.set_defaults(handler=cmd_run)

    cp = sub.add_parser("record", help="record what live feeds deliver as a scenario folder (a drill)")
    cp.add_argument("--sources", required=True, help="comma-separated source names from feeds.yaml")
    cp.add_argument("--hours", type=float, required=True, help="how long to record")
    cp.add_argument("--out", type=Path, required=True, help="the scenario folder to write")
    cp.add_argument("--config", type=Path, default=None)
    cp.add_argument("--rules", type=Path, default=None, help="rules.yaml for the scenario (default the sample rules)")
    cp.add_argument("--zones", type=Path, default=None, help="zones.geojson for the scenario (default none)")
    cp.add_argument("--resources", type=Path, default=None, help="resources.csv for the scenario (default none)")
    cp.add_argument("--name", default=None, help="scenario name (default recorded-<date>)")
    cp.add_argument("--max-polls", type=int, default=None, help="stop each source after this many polls")
    cp.set_defaults(handler=cmd_record)


def _parse_payload(source: str, payload: bytes, args: argparse.Namespace | None = None) -> Any:
    from . import cap_feed, ea, nws, open_meteo, usgs

    if source == "open-meteo":
        from command.timeutil import parse_time

        kw: dict[str, Any] = {}
        if args is not None and args.point:
            kw["point"] = args.point
        if args is not None and args.issued:
            kw["issued"] = parse_time(args.issued)
        return open_meteo.parse(payload, **kw)
    return {"usgs": usgs.parse, "ea": ea.parse, "nws": nws.parse, "cap": cap_feed.parse}[source](payload)


def iter_json_lines(result: ParseResult) -> Iterable[dict[str, Any]]:
    """What `feeds parse` prints: stations, readings, forecasts, warnings, links, rejected records."""
    from command.timeutil import to_iso

    for st in result.stations:
        yield {"type": "station", **st.model_dump()}
    for rd in result.readings:
        yield {"type": "reading", **rd.to_json()}
    for fc in result.forecasts:
        yield {"type": "forecast", **fc.to_json()}
    for w in result.warnings:
        d = w.model_dump()
        for t in ("sent", "onset", "expires", "ends"):
            d[t] = to_iso(d[t])
        yield {"type": "warning", **d}
    for link in result.follow:
        yield {"type": "link", "url": link}
    for rej in result.rejected:
        yield {"type": "rejected", "reason": rej.reason, "record": rej.record}


def cmd_parse(args: argparse.Namespace, settings: Any = None) -> int:
    from .errors import PayloadError

    try:
        payload = sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        result = _parse_payload(args.source, payload, args)
    except PayloadError as exc:
        print(f"error: {args.file} is not a readable {args.source} payload: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # e.g. a bad --issued
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout
    for rec in iter_json_lines(result):
        if args.no_stations and rec["type"] == "station":
            continue
        out.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
    print(f"{args.source}: {len(result.readings)} readings, {len(result.forecasts)} forecast values, "
          f"{len(result.warnings)} warnings, {len(result.stations)} stations, {len(result.rejected)} rejected",
          file=sys.stderr)
    return 0


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def cmd_run(args: argparse.Namespace, settings: Any) -> int:
    from command.keys import Keys
    from command.runtime.redis_server import redis_for

    from .health import read_health
    from .runner import FeedConfigError, FeedRunner, build_sources, load_config, prepare_namespace

    try:
        config = load_config(args.config)
        only = [s.strip() for s in args.sources.split(",") if s.strip()] if args.sources else None
        sources = build_sources(config, only)
    except FeedConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not sources:
        print("no source is enabled in the feeds configuration: set `enabled: true` on one "
              "(see docs/feeds.md), or name them with --sources", file=sys.stderr)
        return 2
    ns = args.namespace or config.get("namespace") or settings.namespace
    # a loop's client: a write that may have run is never re-sent; the next poll reads the marks again
    with redis_for(settings, purpose="loop") as r:
        keys = Keys(ns)
        try:
            prepare_namespace(r, keys, rules=args.rules, zones=args.zones, mode="live", shards=settings.shards)
        except FeedConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        runner = FeedRunner(r, keys, sources)
        try:
            if args.once:
                for rep in runner.poll_all():
                    h = read_health(r, keys, rep.source)
                    state = "ok" if rep.ok else f"FAILED: {h.get('last_error')}"
                    print(f"{rep.source}: {state}; {rep.readings} new readings, {rep.forecasts} forecast runs, "
                          f"{rep.warnings} warnings in force, {rep.rejected} rejected"
                          + (f", missing {', '.join(rep.missing)}" if rep.missing else ""))
                return 0
            print(f"feeds {', '.join(s.name for s in sources)} -> namespace {ns} (Ctrl-C stops)", flush=True)
            runner.run(_stop_on_signals())
        finally:
            runner.close()
    return 0


def cmd_record(args: argparse.Namespace, settings: Any) -> int:
    from command.runtime.redis_server import redis_for

    from .record import record
    from .runner import FeedConfigError, build_sources, load_config

    try:
        config = load_config(args.config)
        sources = build_sources(config, [s.strip() for s in args.sources.split(",") if s.strip()])
    except FeedConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with redis_for(settings) as r:
        res = record(r, sources, hours=args.hours, out=args.out, rules=args.rules, zones=args.zones,
                     resources=args.resources, name=args.name, max_polls=args.max_polls, stop=_stop_on_signals())
    print(f"recorded {res.readings} readings from {res.stations} stations ({', '.join(s.name for s in sources)}) "
          f"into {args.out}; replay it with: python -m command replay {args.out} --speed max")
    return 0
