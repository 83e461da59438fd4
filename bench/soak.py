"""Soak benchmark: the whole stack under a steady 5,000 readings/s; does memory level off?

    .venv/bin/python bench/soak.py                  # 10 minutes at 5,000 readings/s: a table every 30 s
    .venv/bin/python bench/soak.py --minutes 3      # shorter
    .venv/bin/python bench/soak.py --json           # one JSON object on stdout, nothing else
    .venv/bin/python bench/soak.py --rate 2000 --every 10

**The stack** is the real one: ``python app.py --no-drill`` (supervisor, embedded Redis with its AOF,
audit anchor loop, the live engine, drill runner, RQ worker, gunicorn) in a temporary data folder. The
``live`` namespace gets 500 generated gauges (400 water-level gauges with thresholds, 100 rain gauges:
``bench/engine.py``'s city) and the sample's rules, zones and resources.

**The load**: a producer process writes ``--rate`` readings a second (default 5,000: each gauge 10 times
a second) with the feeds' own writer (``command.streams.StreamWriter(record=True)``: the input stream,
each gauge's latest values and trend series), in batches every 100 ms, the wall clock as reading time.
Values wander around each gauge's normal level; about 2 % of the gauges cross their yellow threshold
for a minute at a time (a 2-minute tide), which the sample's threshold rule (30 minutes above a level)
does not yet call an alert: the soak loads the input path (feeds' writer, engine, trimming), not the
alert path.

**Sampled every ``--every`` seconds (default 30)**: the resident memory (RSS) of every process of the
stack (by role, gunicorn workers each) and of the producer, Redis ``used_memory`` and the AOF's size,
the length of every stream of ``live`` (the shard's input stream, alerts, recommendations, dead
letters ...), the number of keys, and the engine's progress (entries added to the input stream, and
those it has not yet acknowledged).

**Levelled off?** For Redis ``used_memory`` and for the stack's total RSS: the growth over the second
half of the run (from the sample at half time to the last) is compared with the value at half time;
below 5 % (or under 5 MB) counts as levelled off. The input stream must stay short too: it is trimmed
below what the engine acknowledged (docs/operations.md, Retention).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.engine import make_city, write_geojson, write_scenario  # noqa: E402
from bench.web_load import log, processes, start_stack, stop_stack  # noqa: E402
from command.config import SAMPLE_DATA  # noqa: E402
from command.keys import ENGINE_GROUP, LIVE, Keys  # noqa: E402
from command.scenarios.load import load_scenario  # noqa: E402
from command.scenarios.namespaces import load_namespace  # noqa: E402
from command.streams import StreamWriter, input_count  # noqa: E402

GAUGES = 500
BATCH_S = 0.1
LEVEL_TOLERANCE = 0.05  # growth over the second half, relative ...
LEVEL_FLOOR_BYTES = 5 * 1024 * 1024  # ... or absolute: below either counts as levelled off


def producer(url: str, ids: list[str], kinds: list[str], base: list[float], yellow: list[float], rate: float,
             seconds: float, out: mp.Queue) -> None:
    """`rate` readings/s for `seconds`, with the feeds' writer, in batches every BATCH_S."""
    r = redis.Redis.from_url(url)
    keys = Keys(LIVE)
    rng = np.random.default_rng(5)
    n = len(ids)
    per_batch = max(1, round(rate * BATCH_S))
    level = np.array(base, dtype=float)
    wl = np.array([k == "water_level" for k in kinds])
    # ~2 % of the water-level gauges swing across their thresholds (yellow, then back down)
    swing = wl & (rng.random(n) < 0.02)
    amp = np.where(swing, np.nan_to_num(np.array(yellow) - np.array(base)) + 1.0, 0.05)
    noise = rng.normal(0, 0.01, 100_003)
    sent, k, i, behind = 0, 0, 0, 0.0
    t_start = time.time()
    while True:
        target = t_start + i * BATCH_S
        if target >= t_start + seconds:
            break
        now = time.time()
        if target > now:
            time.sleep(target - now)
        else:
            behind = max(behind, now - target)
        t_ms = int(time.time() * 1000)
        phase = (time.time() - t_start) / 120.0 * 2 * np.pi  # a 2-minute tide
        w = StreamWriter(r, keys, 1, record=True)
        for _ in range(per_batch):
            j = k % n
            if wl[j]:
                v = float(level[j] + amp[j] * max(0.0, np.sin(phase + j)) + noise[k % 100_003])
                w.reading(ids[j], "water_level", t_ms, round(v, 3))
            else:
                w.reading(ids[j], "rainfall", t_ms, 0.0)
            k += 1
        w.flush()
        sent += per_batch
        i += 1
    r.close()
    out.put({"sent": sent, "elapsed": time.time() - t_start, "max_behind_s": round(behind, 3)})


def sample(r: redis.Redis, procs: dict[str, psutil.Process], prod: psutil.Process | None, data: Path,
           t0: float) -> dict[str, Any]:
    keys = Keys(LIVE)
    rss: dict[str, int] = {}
    for name, p in procs.items():
        with contextlib.suppress(psutil.Error):
            rss[name] = p.memory_info().rss
    if prod is not None:
        with contextlib.suppress(psutil.Error):
            rss["producer"] = prod.memory_info().rss
    mem = r.info("memory")
    streams = {
        "input": keys.shard_stream(0), "alerts": keys.alerts_stream, "recommendations": keys.recommendations_stream,
        "deadletter": keys.deadletter, "events": keys.events, "status": keys.status_stream, "audit": keys.audit,
        "warnings": keys.warnings_stream, "dispatches": keys.dispatches_stream,
    }
    with r.pipeline(transaction=False) as pipe:
        for key in streams.values():
            pipe.xlen(key)
        lengths = pipe.execute()
    try:
        groups = {g["name"].decode(): g for g in r.xinfo_groups(keys.shard_stream(0))}
        pending = int(groups[ENGINE_GROUP]["pending"]) if ENGINE_GROUP in groups else None
    except redis.ResponseError:
        pending = None
    aof = data / "redis" / "appendonly.aof"
    aof_bytes = sum(f.stat().st_size for f in aof.parent.glob("appendonly*")) if aof.parent.exists() else 0
    return {
        "t_s": round(time.monotonic() - t0, 1),
        "rss": rss,
        "stack_rss": sum(v for k, v in rss.items() if k != "producer"),
        "redis_used_memory": int(mem["used_memory"]),
        "aof_bytes": aof_bytes,
        "streams": dict(zip(streams, lengths, strict=True)),
        "keys": int(r.dbsize()),
        "input_added": input_count(r, keys, 1),
        "engine_pending": pending,
    }


def levelled(values: list[int]) -> dict[str, Any]:
    """Growth over the second half of the samples, and whether it is small enough to call level."""
    if len(values) < 3:
        return {"levelled_off": None, "why": "too few samples"}
    mid = values[len(values) // 2]
    growth = values[-1] - mid
    ok = growth <= max(LEVEL_FLOOR_BYTES, LEVEL_TOLERANCE * mid)
    return {"levelled_off": ok, "at_half": mid, "last": values[-1], "growth_second_half": growth,
            "growth_second_half_pct": round(100 * growth / mid, 1) if mid else None}


def mb(x: int | None) -> str:
    return "—" if x is None else f"{x / 1048576:.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=5000.0, help="readings per second")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    args = ap.parse_args(argv)
    seconds = args.minutes * 60
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    data = tmp / "var"
    data.mkdir()
    log(f"starting the stack in {data} ...")
    stack = start_stack(data)
    samples: list[dict[str, Any]] = []
    prod_res: dict[str, Any] = {}
    try:
        r = redis.Redis.from_url(stack.redis_url)
        city = make_city(GAUGES)
        stations = write_geojson(tmp / "stations.geojson", city.features)
        folder = write_scenario(tmp / "soak", "soak", "500 generated gauges", stations, SAMPLE_DATA / "rules.yaml")
        load_namespace(r, Keys(LIVE), load_scenario(folder), shards=1, mode="live")  # the engine reloads
        time.sleep(3)
        procs = processes(stack)
        q: mp.Queue = mp.Queue()
        prod = mp.Process(target=producer, args=(stack.redis_url, city.ids, city.kinds, city.base.tolist(),
                                                 city.yellow.tolist(), args.rate, seconds, q), daemon=True)
        t0 = time.monotonic()
        prod.start()
        pp = psutil.Process(prod.pid)
        log(f"{args.rate:,.0f} readings/s for {args.minutes:g} min, a sample every {args.every:g} s")
        samples.append(sample(r, procs, pp, data, t0))
        while prod.is_alive():
            nxt = t0 + len(samples) * args.every
            while time.monotonic() < nxt and prod.is_alive():
                time.sleep(0.2)
            if not prod.is_alive():
                break
            s = sample(r, procs, pp, data, t0)
            samples.append(s)
            log(f"  {s['t_s']:>6} s: redis {mb(s['redis_used_memory'])} MB, stack RSS {mb(s['stack_rss'])} MB, "
                f"input stream {s['streams']['input']}, alerts {s['streams']['alerts']}, "
                f"added {s['input_added']}, pending {s['engine_pending']}")
        prod_res = q.get(timeout=30)
        time.sleep(min(args.every, 15))  # the engine catches up; the next trim runs
        samples.append(sample(r, procs, None, data, t0))
        r.close()
    finally:
        stop_stack(stack)
    run = [s for s in samples if s["t_s"] >= 0]
    out = {
        "rate": args.rate, "minutes": args.minutes, "gauges": GAUGES, "every_s": args.every,
        "produced": prod_res.get("sent"), "achieved_rate": round(prod_res["sent"] / prod_res["elapsed"], 1)
        if prod_res else None, "producer_max_behind_s": prod_res.get("max_behind_s"),
        "samples": run,
        "redis_used_memory": levelled([s["redis_used_memory"] for s in run]),
        "stack_rss": levelled([s["stack_rss"] for s in run]),
        "input_stream_max": max(s["streams"]["input"] for s in run),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_1m": os.getloadavg()[0]},
    }
    if args.json:
        print(json.dumps(out))
        return 0
    names = sorted({k for s in run for k in s["rss"]})
    print(f"{'t (s)':>6} {'redis MB':>9} {'AOF MB':>7} {'keys':>6} {'input':>7} {'alerts':>7} {'added':>9} "
          f"{'pending':>7}  " + " ".join(f"{n[:12]:>12}" for n in names) + "   (RSS MB)")
    for s in run:
        print(f"{s['t_s']:>6} {mb(s['redis_used_memory']):>9} {mb(s['aof_bytes']):>7} {s['keys']:>6} "
              f"{s['streams']['input']:>7} {s['streams']['alerts']:>7} {s['input_added']:>9} "
              f"{str(s['engine_pending']):>7}  " + " ".join(f"{mb(s['rss'].get(n)):>12}" for n in names))
    for what in ("redis_used_memory", "stack_rss"):
        v = out[what]
        if v.get("levelled_off") is None:
            print(f"{what}: {v['why']}")
        else:
            print(f"{what}: {'levelled off' if v['levelled_off'] else 'STILL GROWING'} "
                  f"({mb(v['at_half'])} MB at half time, {mb(v['last'])} MB at the end, "
                  f"{v['growth_second_half_pct']} % in the second half)")
    print(f"produced {out['produced']} readings at {out['achieved_rate']}/s; input stream at most "
          f"{out['input_stream_max']} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
