"""Backtest benchmark: `python -m command backtest` on a 144,000-reading scenario with three rule sets.

    .venv/bin/python bench/backtest.py            # a readable summary (progress on stderr)
    .venv/bin/python bench/backtest.py --json     # one JSON object on stdout, nothing else
    .venv/bin/python bench/backtest.py --quick    # 12 hours instead of 72 (a smoke test)

The scenario is bench/engine.py's generated city (500 gauges, 80 % water level with thresholds, a flood
wave at ~15 % of them; 20 % rain gauges), 72 hours at 15-minute steps: 144,000 readings. The three
rule sets are the scenario's own (sample_data/rules.yaml), sample_data/rules_sensitive.yaml and a
strict one written here (river-stage waits 1 h, no rapid-rise). The time is taken around
`command.scenarios.backtest.run_backtest` with `--out`: loading and checking the scenario, deriving
the truth, three replays (each in its own namespace, deleted), scoring, and writing backtest.json and
backtest.html. Target: under 30 s.

It uses ``REDIS_URL`` if set, else starts the project's embedded Redis in a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# this file's folder (bench/) also holds feeds.py: keep it off the path, or it would hide the `feeds` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench.engine import STEP_MS, make_city, simulate, write_geojson, write_scenario  # noqa: E402
from command.config import SAMPLE_DATA, Settings  # noqa: E402
from command.runtime.redis_server import EmbeddedRedis  # noqa: E402
from command.scenarios.backtest import BacktestProgress, run_backtest  # noqa: E402

TARGET_S = 30.0
STRICT_RULES = """\
levels: [yellow, orange, red]
rules:
  - {id: river-stage, kind: threshold, match: {kind: water_level}, above: thresholds, for: 1h}
  - {id: heavy-rain, kind: accumulation, match: {kind: rainfall}, window: 1h, above: {yellow: 25, orange: 40, red: 55}}
  - {id: sensor-silent, kind: stale, match: {kind: water_level}, after: 1h, level: yellow}
"""


def log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    p.add_argument("--quick", action="store_true", help="12 hours instead of 72")
    p.add_argument("--hours", type=int, help="scenario length (default 72: 144,000 readings with 500 gauges)")
    p.add_argument("--stations", type=int, default=500)
    p.add_argument("--out", type=Path, help="keep backtest.json and backtest.html here (default: a temporary folder)")
    p.add_argument("--silent", action="store_true", help="no progress on stderr")
    p.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = p.parse_args(argv)
    hours = args.hours or (12 if args.quick else 72)
    quiet = args.silent
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-backtest-"))
    server = None
    url = os.environ.get("REDIS_URL")
    try:
        if not url:
            server = EmbeddedRedis(tmp / "redis")
            url = server.start()
            log(f"embedded Redis at {url}", quiet)
        city = make_city(args.stations)
        steps = hours * 3_600_000 // STEP_MS
        log(f"generating a {hours} h, {city.n}-station scenario ({steps * city.n:,} readings; not timed)", quiet)
        stations = write_geojson(tmp / "stations.geojson", city.features)
        folder = write_scenario(tmp / "scenario", "bench_backtest", f"generated: {city.n} gauges, {hours} h",
                                stations, SAMPLE_DATA / "rules.yaml", city, simulate(city, steps, seed=23))
        strict = tmp / "rules_strict.yaml"
        strict.write_text(STRICT_RULES, encoding="utf-8")
        rules = [SAMPLE_DATA / "rules_sensitive.yaml", strict]
        out = args.out or tmp / "out"
        r = redis.Redis.from_url(url)
        try:
            log("run_backtest: 3 rule sets (scenario, rules_sensitive, rules_strict)", quiet)
            t0 = time.perf_counter()
            res = run_backtest(r, folder, rules, out=out, batch=Settings().engine_batch,
                               progress=None if quiet else BacktestProgress(sys.stderr))
            dt = time.perf_counter() - t0
        finally:
            r.close()
        rep = res.report
        result: dict[str, Any] = {
            "seconds": dt, "target_seconds": TARGET_S, "pass": dt < TARGET_S,
            "readings": steps * city.n, "stations": city.n, "hours": hours,
            "rule_sets": [{"name": run.spec.name, "alerts": run.alerts, "alert_events": run.alert_events,
                           "seconds": round(run.seconds, 3), "yellow": rep["rule_sets"][i]["levels"]["yellow"]}
                          for i, run in enumerate(res.runs)],
            "timings": {k: round(v, 3) for k, v in res.timings.items()},
            "truth": rep["truth"], "scored_stations": len(rep["scored_stations"]), "events": rep["events"],
            "html_bytes": (out / "backtest.html").stat().st_size,
            "external_redis": server is None, "loadavg_1m": [load_before, os.getloadavg()[0]],
            "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        }
        if args.json:
            print(json.dumps(result))
        else:
            print(f"backtest of {result['readings']:,} readings ({city.n} gauges, {hours} h), "
                  f"{len(res.runs)} rule sets: {dt:.2f} s (target < {TARGET_S:g} s: "
                  f"{'PASS' if result['pass'] else 'FAIL'})")
            for x in result["rule_sets"]:
                y = x["yellow"]
                print(f"  {x['name']:<16} {x['seconds']:6.2f} s  {x['alerts']:4} alerts  yellow: "
                      f"{y['hits']} hits, {y['misses']} misses, {y['false_alarms']} false alarms, POD {y['pod']}, "
                      f"FAR {y['far']}, CSI {y['csi']}")
            print(f"  timings {result['timings']}; backtest.html {result['html_bytes'] / 1e6:.1f} MB; "
                  f"{result['nproc']} cores, load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
        return 1 if args.strict and not result["pass"] else 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # --out is elsewhere, and kept


if __name__ == "__main__":
    sys.exit(main())
