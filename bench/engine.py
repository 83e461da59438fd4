"""Rule engine benchmark: the figures of the design's "Targets", measured side by side in one run.

    .venv/bin/python bench/engine.py            # a readable table (progress on stderr)
    .venv/bin/python bench/engine.py --json     # one JSON object on stdout, nothing else
    .venv/bin/python bench/engine.py --quick    # smaller sizes, a smoke test (< 30 s)
    .venv/bin/python bench/engine.py --profile  # also cProfile one engine drain (top functions on stderr)

It uses ``REDIS_URL`` if set, else starts the project's embedded Redis in a temporary folder (and
stops it at the end). Every part writes to its own namespace (``bench-<part>-<id>``) and deletes it.

Every part uses one batch size B: the engine's own setting, ``Settings.engine_batch`` (environment
``ECD_ENGINE_BATCH``; 5,000 by default), unless ``--batch`` is given. The raw side reads with the same
B, so the ratio compares like with like.

(a) raw_rate: XREADGROUP COUNT B + XACK of the ids, on a stream holding N entries with exactly the
    payload the engine reads (``command.streams.reading_entry``); entries/s. Filling is not timed.
(b) engine_rate: the same N readings (500 generated stations with thresholds, the sample rules) from
    the stream to alerts by one ``command.engine.consumer.Engine`` (batch B); entries/s, timed around
    ``Engine.drain()``. ratio = engine_rate / raw_rate (target >= 0.5). The raw side reads, then
    acknowledges, one batch at a time through redis-py's parsed reply; the engine reads the reply as
    the server sends it and asks for the next batch before it evaluates the current one
    (``command.engine.slots.ReadAhead``), so the server gathers it meanwhile: a ratio above 1 means
    that overlap, not less work per entry (compare the CPU per entry of the two).
(c) latency: a producer process writes 5,000 readings/s for ~10 s in small pipelined batches; every
    ~50 ms one reading crosses a ``for``-less threshold; an engine runs in its own process
    (``python -m command engine --batch B``); this process reads the alerts stream (XREAD BLOCK) and takes
    time seen - time of the probe's XADD (``time.time()`` in both processes). Target p99 < 250 ms.
(d) replay: a generated 72-hour, 500-station scenario at 15-minute steps (144,000 readings) through
    ``command.scenarios.replay.run_replay(r, folder, speed=None, batch=B)``, timed around that call. Target < 10 s.

(a), (b) and (d) also give this process's CPU time (``time.process_time()``; Redis's own excluded):
per entry for the raw side and the engine, in all for the replay. On a shared machine the rates move
with the other work on it; the CPU per entry hardly does.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import multiprocessing as mp
import os
import platform
import pstats
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import redis
import redis.utils
import yaml

ROOT = Path(__file__).resolve().parent.parent
# this file's folder (bench/) also holds feeds.py: keep it off the path, or it would hide the `feeds` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from command.config import SAMPLE_DATA, Settings  # noqa: E402
from command.engine.consumer import Engine  # noqa: E402
from command.keys import ENGINE_GROUP, Keys  # noqa: E402
from command.runtime.redis_server import EmbeddedRedis  # noqa: E402
from command.scenarios.load import load_scenario  # noqa: E402
from command.scenarios.namespaces import delete_namespace, load_namespace  # noqa: E402
from command.scenarios.replay import run_replay  # noqa: E402
from command.streams import reading_entry  # noqa: E402
from command.timeutil import parse_time, to_iso  # noqa: E402

TARGET_RATIO = 0.5
TARGET_P99_MS = 250.0
TARGET_REPLAY_S = 10.0

TZ = "Asia/Shanghai"
START_ISO = "2026-07-14T00:00:00+08:00"
START_MS = parse_time(START_ISO)
STEP_MS = 15 * 60_000
BATCH = 5000  # set in main(): the engine's batch setting (Settings.engine_batch) or --batch
PROBE_STATIONS = ("PROBE-A", "PROBE-B")
PROBE_RULE = {"id": "bench-probe", "kind": "threshold", "match": {"kind": "water_level"},
              "above": {"red": 100}, "description": "latency probe: opens at once (no `for`)"}

_quiet = False


def log(msg: str) -> None:
    if not _quiet:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# A generated city: ~500 gauges with thresholds, and realistic series for them
# ------------------------------------------------------------------------------------------------
@dataclass
class City:
    ids: list[str]
    kinds: list[str]
    units: list[str]
    base: np.ndarray  # a water-level gauge's normal level (m); 0 for a rain gauge
    yellow: np.ndarray  # a water-level gauge's yellow threshold (m); nan for a rain gauge
    features: list[dict[str, Any]]

    @property
    def n(self) -> int:
        return len(self.ids)


def make_city(n: int, seed: int = 7) -> City:
    """80 % water-level gauges (thresholds yellow/orange/red in m), 20 % rain gauges (the rules' bounds)."""
    rng = np.random.default_rng(seed)
    n_wl = round(n * 0.8)
    ids, kinds, units, feats = [], [], [], []
    base = np.zeros(n)
    yellow = np.full(n, np.nan)
    for j in range(n):
        lon, lat = rng.uniform(114.19, 114.46), rng.uniform(30.45, 30.70)
        props: dict[str, Any]
        if j < n_wl:
            sid, kind, unit = f"WL-B{j + 1:04d}", "water_level", "m"
            normal = rng.uniform(18.0, 30.0)
            y = normal + rng.uniform(0.8, 2.0)
            base[j], yellow[j] = normal, y
            props = {"id": sid, "name": f"Bench gauge {j + 1}", "kind": kind,
                     "thresholds": {"yellow": round(y, 2), "orange": round(y + 0.6, 2), "red": round(y + 1.2, 2),
                                    "unit": "m"}}
        else:
            sid, kind, unit = f"RF-B{j + 1:04d}", "rainfall", "mm"
            props = {"id": sid, "name": f"Bench rain gauge {j + 1}", "kind": kind}
        ids.append(sid)
        kinds.append(kind)
        units.append(unit)
        feats.append({"type": "Feature", "properties": props,
                      "geometry": {"type": "Point", "coordinates": [round(lon, 5), round(lat, 5)]}})
    return City(ids, kinds, units, base, yellow, feats)


def simulate(city: City, steps: int, seed: int = 11) -> np.ndarray:
    """Values (steps x stations) at 15-minute steps, in SI.

    Water level: the normal level plus a tide-like swing and noise (well below yellow), and for ~15 %
    of the gauges one flood wave that peaks between 0.3 m below yellow and 0.7 m above red.
    Rainfall (mm per 15 min): scattered drizzle, and a storm over ~25 % of the gauges whose hourly
    totals reach from a few mm to over 50 mm.
    """
    rng = np.random.default_rng(seed)
    h = np.arange(steps) * 0.25  # hours
    span = max(h[-1], 1.0) if steps else 1.0
    vals = np.empty((steps, city.n))
    for j in range(city.n):
        if city.kinds[j] == "water_level":
            v = (city.base[j] + 0.05 * np.sin(2 * math.pi * h / 12.42 + rng.uniform(0, 2 * math.pi))
                 + rng.normal(0, 0.01, steps))
            if rng.random() < 0.15:
                c = rng.uniform(0.25, 0.75) * span
                s = np.where(h < c, rng.uniform(2.5, 6.0), rng.uniform(6.0, 14.0))
                amp = (city.yellow[j] - city.base[j]) + rng.uniform(-0.3, 1.9)
                v = v + amp * np.exp(-0.5 * ((h - c) / s) ** 2)
            vals[:, j] = np.round(v, 3)
        else:
            v = np.where(rng.random(steps) < 0.04, rng.uniform(0, 0.6, steps), 0.0)
            if rng.random() < 0.25:
                c = rng.uniform(0.2, 0.8) * span
                v = v + rng.uniform(2, 16) * np.exp(-0.5 * ((h - c) / rng.uniform(1.5, 4.0)) ** 2) \
                    * rng.uniform(0.6, 1.2, steps)
            vals[:, j] = np.round(np.clip(v, 0, None), 1)
    return vals


def write_scenario(folder: Path, name: str, description: str, stations: Path, rules: Path,
                   city: City | None = None, vals: np.ndarray | None = None) -> Path:
    """A scenario folder (the contract of docs/scenarios.md) sharing the sample zones and resources."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"name": name, "description": description, "start": START_ISO, "timezone": TZ,
           "stations": str(stations), "zones": str(SAMPLE_DATA / "zones.geojson"),
           "resources": str(SAMPLE_DATA / "resources.csv"), "rules": str(rules)}
    (folder / "scenario.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    lines = ["time,station_id,kind,value,unit"]
    if city is not None and vals is not None:
        for i in range(vals.shape[0]):
            t = to_iso(START_MS + i * STEP_MS, TZ)
            row = vals[i]
            lines += [f"{t},{city.ids[j]},{city.kinds[j]},{row[j]:g},{city.units[j]}" for j in range(city.n)]
    (folder / "readings.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def write_geojson(path: Path, features: list[dict[str, Any]]) -> Path:
    path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": features}))
    return path


def stream_entries(city: City, n: int, seed: int = 11) -> list[dict[str, bytes]]:
    """n reading entries in time order (every station at each 15-minute step), as the feeds write them."""
    steps = math.ceil(n / city.n)
    vals = simulate(city, steps, seed)
    out: list[dict[str, bytes]] = []
    ids, kinds = city.ids, city.kinds
    for i in range(steps):
        t = START_MS + i * STEP_MS
        row = vals[i].tolist()
        out += [reading_entry(ids[j], kinds[j], t, row[j]) for j in range(city.n)]
    return out[:n]


def fill(r: redis.Redis, stream: str, entries: list[dict[str, bytes]], chunk: int = 2000) -> None:
    pipe = r.pipeline(transaction=False)
    for i in range(0, len(entries), chunk):
        for e in entries[i:i + chunk]:
            pipe.xadd(stream, e)
        pipe.execute()


def new_keys(part: str) -> Keys:
    return Keys(f"bench-{part}-{uuid.uuid4().hex[:8]}")


# ------------------------------------------------------------------------------------------------
# (a) raw Redis rate
# ------------------------------------------------------------------------------------------------
def bench_raw(url: str, entries: list[dict[str, bytes]]) -> dict[str, Any]:
    r = redis.Redis.from_url(url)
    keys = new_keys("raw")
    stream = keys.shard_stream(0)
    try:
        log(f"(a) raw: filling {len(entries):,} entries (not timed)")
        fill(r, stream, entries)
        r.xgroup_create(stream, ENGINE_GROUP, id="0")
        log(f"(a) raw: XREADGROUP COUNT {BATCH} + XACK until empty")
        done = 0
        c0, t0 = time.process_time(), time.perf_counter()
        while True:
            resp = r.xreadgroup(ENGINE_GROUP, "bench-raw", {stream: ">"}, count=BATCH)
            if not resp or not resp[0][1]:
                break
            batch = resp[0][1]
            r.xack(stream, ENGINE_GROUP, *[eid for eid, _ in batch])
            done += len(batch)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        if done != len(entries):
            raise RuntimeError(f"raw read {done} entries, expected {len(entries)}")
        log(f"(a) raw: {done:,} entries in {dt:.2f} s = {done / dt:,.0f}/s")
        return {"raw_rate": done / dt, "raw_seconds": dt, "raw_cpu_us_per_entry": cpu / done * 1e6}
    finally:
        delete_namespace(r, keys)
        r.close()


# ------------------------------------------------------------------------------------------------
# (b) engine rate
# ------------------------------------------------------------------------------------------------
def _engine_namespace(r: redis.Redis, scenario_dir: Path, entries: list[dict[str, bytes]], part: str) -> Keys:
    keys = new_keys(part)
    load_namespace(r, keys, load_scenario(scenario_dir), shards=1, mode="exercise")
    fill(r, keys.shard_stream(0), entries)
    return keys


def bench_engine(url: str, scenario_dir: Path, entries: list[dict[str, bytes]]) -> dict[str, Any]:
    r = redis.Redis.from_url(url)
    keys = None
    try:
        log(f"(b) engine: loading the namespace and filling {len(entries):,} entries (not timed)")
        keys = _engine_namespace(r, scenario_dir, entries, "engine")
        eng = Engine(r, keys, batch=BATCH, consumer="bench-engine")
        eng.start()
        log(f"(b) engine: Engine.drain() (batch {BATCH})")
        c0, t0 = time.process_time(), time.perf_counter()
        n = eng.drain()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        eng.release()
        if n != len(entries):
            raise RuntimeError(f"engine processed {n} entries, expected {len(entries)}")
        alerts = r.zcard(keys.alerts_index)
        still_open = r.zcard(keys.alerts_open)
        log(f"(b) engine: {n:,} entries in {dt:.2f} s = {n / dt:,.0f}/s; {alerts} alerts opened "
            f"({eng.alert_events} alert events, {still_open} still open), "
            f"{r.xlen(keys.recommendations_stream)} recommendations; CPU {cpu / n * 1e6:.1f} us per entry")
        # this process's CPU (Redis's excluded): unlike the rate, hardly moved by other work on the machine
        return {"engine_rate": n / dt, "engine_seconds": dt, "engine_cpu_us_per_entry": cpu / n * 1e6,
                "engine_entries": n, "alerts": alerts,
                "alert_events": eng.alert_events}
    finally:
        if keys is not None:
            delete_namespace(r, keys)
        r.close()


def profile_engine(url: str, scenario_dir: Path, entries: list[dict[str, bytes]], top: int = 30) -> str:
    """cProfile of one Engine.drain() over the same input, on a fresh namespace: top functions."""
    r = redis.Redis.from_url(url)
    keys = None
    try:
        keys = _engine_namespace(r, scenario_dir, entries, "profile")
        eng = Engine(r, keys, batch=BATCH, consumer="bench-profile")
        eng.start()
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        n = eng.drain()
        prof.disable()
        dt = time.perf_counter() - t0
        eng.release()
        buf = io.StringIO()
        buf.write(f"cProfile of Engine.drain(): {n:,} entries in {dt:.2f} s under the profiler "
                  f"({n / dt:,.0f}/s)\n")
        st = pstats.Stats(prof, stream=buf).strip_dirs()
        st.sort_stats("cumulative").print_stats(top)
        st.sort_stats("tottime").print_stats(top)
        return buf.getvalue()
    finally:
        if keys is not None:
            delete_namespace(r, keys)
        r.close()


# ------------------------------------------------------------------------------------------------
# (c) latency under load
# ------------------------------------------------------------------------------------------------
def _producer(url: str, stream: str, stations: list[tuple[str, str, float]], rate: float, seconds: float,
              batch_s: float, probe_s: float, clock: str, out: mp.Queue) -> None:
    """Writes `rate` readings/s in pipelined batches every `batch_s`; every `probe_s` one probe station
    goes to 150 (opens an alert at once) and the other back to 0 (resolves the previous one).

    clock "wall": a reading's time is the wall clock (live operation; at 5,000/s over 500 gauges each
    gauge reports 10 times a second). clock "scenario": each round over the gauges is 15 minutes of
    reading time later (a gauge's usual reporting interval). Probes always carry the wall clock."""
    r = redis.Redis.from_url(url)
    pipe = r.pipeline(transaction=False)
    rng = np.random.default_rng(3)
    per_batch = max(1, round(rate * batch_s))
    nst = len(stations)
    noise = rng.normal(0, 0.01, 100_003).tolist()
    k = 0
    probes: list[tuple[str, int, float]] = []
    last_probe_t = {p: 0 for p in PROBE_STATIONS}
    sent = 0
    behind = 0.0
    t_start = time.time() + 0.1
    next_probe = t_start
    nprobe = 0
    i = 0
    while True:
        target = t_start + i * batch_s
        if target >= t_start + seconds:
            break
        now = time.time()
        if target > now:
            time.sleep(target - now)
        else:
            behind = max(behind, now - target)
        t_ms = int(time.time() * 1000)
        probe = None
        if time.time() >= next_probe:
            up, down = PROBE_STATIONS[nprobe % 2], PROBE_STATIONS[(nprobe + 1) % 2]
            tp = max(t_ms, last_probe_t[up] + 1, last_probe_t[down] + 1)
            last_probe_t[up] = last_probe_t[down] = tp
            pipe.xadd(stream, reading_entry(up, "water_level", tp, 150.0))
            pipe.xadd(stream, reading_entry(down, "water_level", tp, 0.0))
            probe = (up, tp)
            nprobe += 1
            next_probe += probe_s
        for _ in range(per_batch):
            sid, kind, base = stations[k % nst]
            v = round(base + noise[k % 100_003], 3) if kind == "water_level" else 0.0
            t_r = t_ms if clock == "wall" else START_MS + (k // nst) * STEP_MS
            pipe.xadd(stream, reading_entry(sid, kind, t_r, v))
            k += 1
        xadd_at = time.time()
        pipe.execute()
        if probe is not None:
            probes.append((probe[0], probe[1], xadd_at))
        sent += per_batch + (2 if probe else 0)
        i += 1
    elapsed = time.time() - t_start
    r.close()
    out.put({"probes": probes, "sent": sent, "elapsed": elapsed, "max_behind_s": behind})


def _wait_line(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the engine process exited early (status {proc.returncode})")
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line:
                return line.strip()
    raise RuntimeError("the engine process did not report ready")


def _p99(a: np.ndarray) -> float | None:
    return float(np.percentile(a, 99)) if len(a) else None


def bench_latency(url: str, tmp: Path, city: City, rate: float, seconds: float,
                  clock: str = "wall") -> dict[str, Any]:
    r = redis.Redis.from_url(url)
    keys = new_keys("latency")
    engine_proc: subprocess.Popen | None = None
    producer: mp.Process | None = None
    try:
        # stations: the city plus two probe gauges (no thresholds); rules: the sample ones + the probe rule
        probe_feats = [{"type": "Feature", "properties": {"id": p, "name": f"Latency probe {p}", "kind": "water_level"},
                        "geometry": {"type": "Point", "coordinates": [114.3, 30.55]}} for p in PROBE_STATIONS]
        stations = write_geojson(tmp / "latency_stations.geojson", city.features + probe_feats)
        rules_doc = yaml.safe_load((SAMPLE_DATA / "rules.yaml").read_text(encoding="utf-8"))
        rules_doc["rules"].append(PROBE_RULE)
        rules = tmp / "latency_rules.yaml"
        rules.write_text(yaml.safe_dump(rules_doc, sort_keys=False), encoding="utf-8")
        folder = write_scenario(tmp / "latency", "bench_latency", "latency probes under load", stations, rules)
        load_namespace(r, keys, load_scenario(folder), shards=1, mode="exercise")
        stream = keys.shard_stream(0)

        env = dict(os.environ, REDIS_URL=url, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        engine_proc = subprocess.Popen(
            [sys.executable, "-m", "command", "engine", "--namespace", keys.ns, "--batch", str(BATCH),
             "--consumer", "bench-latency", "--exit-when-idle", "30"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        log(f"(c) latency: {_wait_line(engine_proc, 60)}")

        bg = [(sid, kind, float(city.base[j]) if kind == "water_level" else 0.0)
              for j, (sid, kind) in enumerate(zip(city.ids, city.kinds, strict=True))]
        q: mp.Queue = mp.Queue()
        producer = mp.Process(target=_producer, args=(url, stream, bg, rate, seconds, 0.01, 0.05, clock, q), daemon=True)
        log(f"(c) latency: producing {rate:,.0f} readings/s for {seconds:g} s ({clock} clock), "
            "a probe every 50 ms")
        producer.start()
        give_up = time.time() + seconds + 60

        seen: dict[tuple[str, int], float] = {}
        last_id = b"0-0"
        result = None
        end_wait = None
        while True:
            resp = r.xread({keys.alerts_stream: last_id}, count=1000, block=100)
            now = time.time()
            for _, items in resp or ():
                for eid, f in items:
                    last_id = eid
                    if f.get(b"event") == b"open":
                        a = orjson.loads(f[b"alert"])
                        if a["rule"] == PROBE_RULE["id"]:
                            seen[(a["subject"], a["opened_at"])] = now
            if result is None:
                try:
                    result = q.get_nowait()
                    end_wait = time.time() + 5.0
                except queue.Empty:
                    if not producer.is_alive() and producer.exitcode not in (None, 0):
                        raise RuntimeError(f"the producer failed (status {producer.exitcode})") from None
                    if time.time() > give_up:
                        raise RuntimeError("the producer did not report back") from None
                    continue
            if all((s, t) in seen for s, t, _ in result["probes"]) or time.time() > end_wait:
                break
        producer.join(5)
        state_vals = r.hvals(keys.shard_state(0))
        state_bytes = sum(len(v) for v in state_vals) / max(len(state_vals), 1)
        lat = np.array([(seen[(s, t)] - x) * 1000 for s, t, x in result["probes"] if (s, t) in seen])
        missing = sum(1 for s, t, _ in result["probes"] if (s, t) not in seen)
        achieved = result["sent"] / result["elapsed"]
        p50, p99 = (float(np.percentile(lat, 50)), float(np.percentile(lat, 99))) if len(lat) else (math.nan, math.nan)
        log(f"(c) latency: {result['sent']:,} readings at {achieved:,.0f}/s (producer at most "
            f"{result['max_behind_s'] * 1000:.0f} ms behind schedule); {len(lat)} probes, {missing} unseen; "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {float(lat.max()) if len(lat) else math.nan:.1f} ms; "
            f"rule state {state_bytes / 1024:.1f} KiB per subject at the end")
        return {"latency_p50_ms": p50, "latency_p99_ms": p99,
                "latency_max_ms": float(lat.max()) if len(lat) else None,
                "latency_probes": len(lat), "latency_missing": missing,
                "latency_readings": result["sent"], "latency_rate": achieved, "latency_target_rate": rate,
                "latency_seconds": seconds, "latency_clock": clock,
                "latency_producer_behind_ms": result["max_behind_s"] * 1000,
                # drift: p99 over the first and the last third of the probes, and the size the rule state
                # of a station reached (bounded: at most one point per minute of the rules' longest window)
                "latency_p99_first_third_ms": _p99(lat[: len(lat) // 3]),
                "latency_p99_last_third_ms": _p99(lat[-(len(lat) // 3):]),
                "latency_state_bytes_per_subject": state_bytes}
    finally:
        if producer is not None and producer.is_alive():
            producer.terminate()
            producer.join(5)
        if engine_proc is not None:
            if engine_proc.poll() is None:
                engine_proc.send_signal(signal.SIGTERM)  # the CLI stops cleanly and gives its shard back
            try:
                out, _ = engine_proc.communicate(timeout=15)
                if out.strip():
                    log(f"(c) latency: {out.strip()}")
            except subprocess.TimeoutExpired:
                engine_proc.kill()
                engine_proc.communicate()
        delete_namespace(r, keys)
        r.close()


# ------------------------------------------------------------------------------------------------
# (d) replay
# ------------------------------------------------------------------------------------------------
def bench_replay(url: str, tmp: Path, city: City, stations: Path, hours: int) -> dict[str, Any]:
    steps = hours * 60 * 60_000 // STEP_MS
    log(f"(d) replay: generating a {hours} h, {city.n}-station scenario ({steps * city.n:,} readings; not timed)")
    folder = write_scenario(tmp / "replay", "bench_replay",
                            f"generated: {city.n} gauges, {hours} h at 15-minute steps", stations,
                            SAMPLE_DATA / "rules.yaml", city, simulate(city, steps, seed=23))
    r = redis.Redis.from_url(url)
    keys = new_keys("replay")
    try:
        log("(d) replay: run_replay(speed=None)")
        c0, t0 = time.process_time(), time.perf_counter()
        res = run_replay(r, folder, speed=None, namespace=keys.ns, batch=BATCH)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        log(f"(d) replay: {res.readings:,} readings ({res.entries:,} stream entries) in {dt:.2f} s, "
            f"{res.alerts} alerts")
        return {"replay_readings": res.readings, "replay_entries": res.entries, "replay_seconds": dt,
                "replay_cpu_seconds": cpu,
                "replay_alerts": res.alerts}
    finally:
        delete_namespace(r, keys)
        r.close()


# ------------------------------------------------------------------------------------------------
def machine(url: str) -> dict[str, Any]:
    r = redis.Redis.from_url(url)
    try:
        info = r.info("server")
    finally:
        r.close()
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"hiredis": bool(redis.utils.HIREDIS_AVAILABLE), "redis_py": redis.__version__,
            "redis_server": info.get("redis_version"), "python": platform.python_version(),
            "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu": cpu}


def print_table(res: dict[str, Any]) -> None:
    def ok(flag: bool | None) -> str:
        return "-" if flag is None else ("PASS" if flag else "FAIL")

    rows = []
    if "raw_rate" in res:
        rows.append(("raw_rate (XREADGROUP+XACK)", f"{res['raw_rate']:,.0f} entries/s", "", None))
        rows.append(("raw CPU per entry (this process)", f"{res['raw_cpu_us_per_entry']:.1f} us", "", None))
    if "engine_rate" in res:
        rows.append(("engine_rate (stream -> alerts)", f"{res['engine_rate']:,.0f} entries/s", "", None))
        rows.append(("engine CPU per entry (this process)", f"{res['engine_cpu_us_per_entry']:.1f} us", "", None))
        rows.append(("alerts opened (engine part)", f"{res['alerts']:,}", "> 0", res["alerts"] > 0))
    if "ratio" in res:
        rows.append(("ratio engine/raw", f"{res['ratio']:.3f}", f">= {TARGET_RATIO}", res["ratio"] >= TARGET_RATIO))
    if "latency_p99_ms" in res:
        rows += [
            ("latency p50", f"{res['latency_p50_ms']:.1f} ms", "", None),
            ("latency p99", f"{res['latency_p99_ms']:.1f} ms", f"< {TARGET_P99_MS:g} ms",
             res["latency_p99_ms"] < TARGET_P99_MS),
            ("latency load", f"{res['latency_rate']:,.0f} readings/s, {res['latency_probes']} probes",
             f"{res['latency_target_rate']:,.0f}/s", None),
        ]
    if "replay_seconds" in res:
        rows.append(("replay", f"{res['replay_readings']:,} readings in {res['replay_seconds']:.2f} s",
                     f"< {TARGET_REPLAY_S:g} s", res["replay_seconds"] < TARGET_REPLAY_S))
        rows.append(("replay CPU (this process)", f"{res['replay_cpu_seconds']:.2f} s", "", None))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    head = ("figure", "value", "target")
    w = [max(w[i], len(head[i])) for i in range(3)]
    print(f"{head[0]:<{w[0]}}  {head[1]:>{w[1]}}  {head[2]:<{w[2]}}  result")
    print("-" * (sum(w) + 14))
    for name, val, tgt, flag in rows:
        print(f"{name:<{w[0]}}  {val:>{w[1]}}  {tgt:<{w[2]}}  {ok(flag)}")
    m = res["machine"]
    print(f"\n{'quick sizes (smoke test), ' if res['quick'] else ''}batch {res['batch']} ({res['batch_from']}) "
          f"for the raw side, the engine and the replay; {m['nproc']} cores ({m['cpu']}), "
          f"Python {m['python']}, redis-server {m['redis_server']}, redis-py {m['redis_py']}, "
          f"hiredis {'yes' if m['hiredis'] else 'no'}, {'REDIS_URL' if res['external_redis'] else 'embedded Redis'}; "
          f"load average {res['loadavg_1m'][0]:.2f} before, {res['loadavg_1m'][1]:.2f} after")


def main(argv: list[str] | None = None) -> int:
    global _quiet, BATCH
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke test, < 30 s)")
    p.add_argument("--profile", action="store_true", help="also cProfile one engine drain (stderr)")
    p.add_argument("--readings", type=int, help="N for the raw and engine parts (default 200,000; quick 20,000)")
    p.add_argument("--repeat", type=int, help="rounds of the raw and engine parts; the median is reported "
                                              "(default 3; quick 1)")
    p.add_argument("--batch", type=int, help="entries per XREADGROUP for the raw side and the engine "
                                             "(default: the engine's setting, ECD_ENGINE_BATCH)")
    p.add_argument("--stations", type=int, default=500)
    p.add_argument("--rate", type=float, default=5000.0, help="readings/s during the latency part")
    p.add_argument("--latency-seconds", type=float, help="default 10 (quick 3)")
    p.add_argument("--latency-clock", choices=("wall", "scenario"), default="wall",
                   help="reading times in the latency part: the wall clock (default; each gauge reports "
                        "10 times a second) or 15-minute steps per round over the gauges")
    p.add_argument("--replay-hours", type=int, help="default 72 (quick 12)")
    p.add_argument("--parts", default="raw,engine,latency,replay",
                   help="comma-separated subset of raw,engine,latency,replay (default: all)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--silent", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)
    _quiet = args.silent
    batch_from = "--batch" if args.batch else "Settings.engine_batch"
    BATCH = args.batch or Settings().engine_batch
    n = args.readings or (20_000 if args.quick else 200_000)
    lat_s = args.latency_seconds or (3.0 if args.quick else 10.0)
    hours = args.replay_hours or (12 if args.quick else 72)
    repeat = args.repeat or (1 if args.quick else 3)
    parts = {x.strip() for x in args.parts.split(",") if x.strip()}
    unknown = parts - {"raw", "engine", "latency", "replay"}
    if unknown:
        p.error(f"unknown part(s) {', '.join(sorted(unknown))}")

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    server = None
    url = os.environ.get("REDIS_URL")
    t_all = time.perf_counter()
    try:
        if not url:
            server = EmbeddedRedis(tmp / "redis")
            url = server.start()
            log(f"embedded Redis at {url}")
        info = machine(url)
        log(f"hiredis {'in use' if info['hiredis'] else 'NOT available'}; redis-server {info['redis_server']}; "
            f"batch {BATCH} ({batch_from}) for the raw side, the engine and the replay")
        city = make_city(args.stations)
        stations = write_geojson(tmp / "stations.geojson", city.features)
        engine_dir = write_scenario(tmp / "engine", "bench_engine", "engine rate: registry only", stations,
                                    SAMPLE_DATA / "rules.yaml")
        res: dict[str, Any] = {}
        profile = None
        if parts & {"raw", "engine"}:
            entries = stream_entries(city, n)
            raws, engines = [], []
            for i in range(repeat):  # alternated, so a slow spell of the machine hits both alike
                if repeat > 1:
                    log(f"round {i + 1} of {repeat}")
                if "raw" in parts:
                    raws.append(bench_raw(url, entries))
                if "engine" in parts:
                    engines.append(bench_engine(url, engine_dir, entries))
            for name, runs in (("raw_rate", raws), ("engine_rate", engines)):
                if runs:
                    res.update(sorted(runs, key=lambda x: x[name])[len(runs) // 2])  # the median round
                    res[f"{name}_samples"] = [x[name] for x in runs]
            if "raw" in parts and "engine" in parts:
                res["ratio"] = res["engine_rate"] / res["raw_rate"]
            if args.profile:
                profile = profile_engine(url, engine_dir, entries)
            del entries
        if "latency" in parts:
            res.update(bench_latency(url, tmp, city, args.rate, lat_s, args.latency_clock))
        if "replay" in parts:
            res.update(bench_replay(url, tmp, city, stations, hours))
        passed = {}
        if "ratio" in res:
            passed["ratio"] = res["ratio"] >= TARGET_RATIO
        if "latency_p99_ms" in res:
            passed["latency_p99_ms"] = res["latency_p99_ms"] < TARGET_P99_MS
        if "replay_seconds" in res:
            passed["replay_seconds"] = res["replay_seconds"] < TARGET_REPLAY_S
        res.update({"readings": n, "repeat": repeat, "stations": city.n, "batch": BATCH, "batch_from": batch_from, "quick": bool(args.quick),
                    "hiredis": info["hiredis"], "external_redis": server is None, "machine": info,
                    "targets": {"ratio": TARGET_RATIO, "latency_p99_ms": TARGET_P99_MS,
                                "replay_seconds": TARGET_REPLAY_S},
                    "pass": passed, "total_seconds": time.perf_counter() - t_all,
                    # other work on the machine skews every figure: the 1-minute load before and after
                    "loadavg_1m": [load_before, os.getloadavg()[0]]})
        if profile:
            print(profile, file=sys.stderr)
        if args.json:
            print(json.dumps(res, default=float))
        else:
            print_table(res)
        return 1 if args.strict and not all(res["pass"].values()) else 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
