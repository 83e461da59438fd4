"""Scaling benchmark: readings/s through 1, 2 and 4 engine processes, on one Redis and on a 3-master
Redis Cluster, side by side in one run, each beside its raw read+ack ceiling, with the CPU of every
process, where the limit is, and a projection for N cores.

    .venv/bin/python bench/scale.py              # a readable table (progress on stderr)
    .venv/bin/python bench/scale.py --json       # one JSON object on stdout, nothing else
    .venv/bin/python bench/scale.py --quick      # smaller sizes, a smoke test
    .venv/bin/python bench/scale.py --backends redis   # one Redis only (or: cluster)

One Redis is ``REDIS_URL`` if set, else the project's embedded server in a temporary folder; the
cluster is started from the same embedded binary on loopback (``tests/cluster/cluster.py``, 3 masters,
no replicas unless ``--replicas``). Each case gets its own namespace, deleted afterwards.

For each backend and each engine count k (1, 2, 4):

- engine: a namespace with S shards (``--shards``, default 4) and the generated 500-gauge registry
  and sample rules of ``bench/engine.py``; k ``python -m command engine`` processes (batch B) start,
  each capped at S/k shards (``--max-shards``), and the benchmark waits until the lease keys show
  every shard held. Then the engines are frozen (SIGSTOP), N readings are added to the shard streams
  (``shard_of`` the station, not timed), the engines are let go (SIGCONT) and the clock runs until
  every shard's group has delivered and acknowledged everything. readings/s = N / that time.
- raw: the same N entries in S streams, read by k processes with XREADGROUP COUNT B + XACK, each on
  its share of the streams, started together: the rate Redis and the client library allow with no
  rule work at all (the ceiling of the engine case).
- CPU: user+system seconds of every engine (or reader) process and of every Redis server process
  (psutil, from the pid ``INFO server`` gives) over the timed span, as a share of one core; and the
  cores the whole machine was busy (every process, other work included: "busy").

The limit: a process near 100 % of a core is the bottleneck; when all of them together use about
every core the machine has, the machine is. Projection: from the CPU seconds per reading of the
engines (e) and of Redis (s, per server; a cluster spreads it over its masters), N cores give about
min((N - R) / e, R / s) readings/s, R being the Redis server processes (one, or the masters) each
on a core of its own, as long as the shards outnumber the engines.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import redis

ROOT = Path(__file__).resolve().parent.parent
# this file's folder (bench/) also holds feeds.py: keep it off the path, or it would hide the `feeds` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.engine import machine, make_city, stream_entries, write_geojson, write_scenario  # noqa: E402
from command.config import SAMPLE_DATA, Settings  # noqa: E402
from command.keys import ENGINE_GROUP, Keys, shard_of  # noqa: E402
from command.runtime.redis_client import client as redis_client  # noqa: E402
from command.runtime.redis_server import EmbeddedRedis  # noqa: E402
from command.scenarios.load import load_scenario  # noqa: E402
from command.scenarios.namespaces import delete_namespace, load_namespace  # noqa: E402
from command.streams import ensure_group  # noqa: E402

ENGINE_COUNTS = (1, 2, 4)
LEASE_MS = 120_000  # the engines are frozen while their input is written: their leases must outlast it
_quiet = False


def log(msg: str) -> None:
    if not _quiet:
        print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# Redis processes and their CPU
# ------------------------------------------------------------------------------------------------
def server_pids(r: Any) -> list[int]:
    """The pid of every Redis server behind a client (every master of a cluster): INFO server."""
    info = r.info("server")
    if "process_id" in info:
        return [int(info["process_id"])]
    return sorted({int(v["process_id"]) for v in info.values() if isinstance(v, dict) and "process_id" in v})


def master_pids(r: Any, cluster: bool) -> list[int]:
    if not cluster:
        return server_pids(r)
    pids = []
    for node in r.get_primaries():
        c = redis.Redis(host=node.host, port=node.port)
        try:
            pids.append(int(c.info("server")["process_id"]))
        finally:
            c.close()
    return pids


def cleanup(r: Any, keys: Keys, cluster: bool) -> None:
    """Delete a case's namespace. The cluster is this benchmark's own (started for it, stopped at the
    end): its masters are flushed; one Redis may be anyone's (REDIS_URL): only the namespace goes."""
    if not cluster:
        delete_namespace(r, keys)
        return
    for node in r.get_primaries():
        c = redis.Redis(host=node.host, port=node.port)
        try:
            c.flushall()
        finally:
            c.close()


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.Error:
            out[pid] = math.nan
    return out


def busy_cores() -> float:
    """CPU seconds the whole machine has spent busy so far (every process, ours or not)."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def cpu_share(before: dict[int, float], after: dict[int, float], seconds: float) -> list[float]:
    return [round((after[p] - before[p]) / seconds, 3) for p in before]


# ------------------------------------------------------------------------------------------------
# Input
# ------------------------------------------------------------------------------------------------
def by_shard(entries: list[dict[str, bytes]], shards: int) -> list[list[dict[str, bytes]]]:
    import orjson

    out: list[list[dict[str, bytes]]] = [[] for _ in range(shards)]
    for e in entries:
        out[shard_of(orjson.loads(e["r"])[0], shards)].append(e)  # command.streams.reading_entry
    return out


def fill(r: Any, keys: Keys, parts: list[list[dict[str, bytes]]], chunk: int = 2000) -> None:
    with r.pipeline(transaction=False) as pipe:
        for s, part in enumerate(parts):
            stream = keys.shard_stream(s)
            for i in range(0, len(part), chunk):
                for e in part[i:i + chunk]:
                    pipe.xadd(stream, e)
                pipe.execute()


def drained(r: Any, keys: Keys, shards: int) -> bool:
    for s in range(shards):
        stream = keys.shard_stream(s)
        groups = [g for g in r.xinfo_groups(stream) if g["name"] == ENGINE_GROUP.encode()]
        if not groups or groups[0]["pending"] or groups[0].get("lag") not in (0, None):
            return False
        if groups[0].get("lag") is None and groups[0]["last-delivered-id"] != r.xinfo_stream(stream)["last-generated-id"]:
            return False
    return True


# ------------------------------------------------------------------------------------------------
# raw: k reader processes, XREADGROUP + XACK
# ------------------------------------------------------------------------------------------------
def _reader(url: str, streams: list[str], batch: int, go: Any, ready: Any) -> None:
    r = redis_client(url, "loop")
    ready.release()
    go.wait()
    for stream in streams:
        while True:
            resp = r.xreadgroup(ENGINE_GROUP, f"raw-{os.getpid()}", {stream: ">"}, count=batch)
            if not resp or not resp[0][1]:
                break
            r.xack(stream, ENGINE_GROUP, *[eid for eid, _ in resp[0][1]])


def bench_raw(url: str, r: Any, cluster: bool, parts: list[list[dict[str, bytes]]], k: int, batch: int) -> dict:
    keys = Keys(f"bench-scale-raw-{uuid.uuid4().hex[:8]}")
    shards = len(parts)
    try:
        for s in range(shards):
            ensure_group(r, keys.shard_stream(s))
        fill(r, keys, parts)
        n = sum(len(p) for p in parts)
        ctx = mp.get_context("fork")
        go, ready = ctx.Event(), ctx.Semaphore(0)
        streams = [keys.shard_stream(s) for s in range(shards)]
        procs = [ctx.Process(target=_reader, args=(url, streams[i::k], batch, go, ready)) for i in range(k)]
        for p in procs:
            p.start()
        for _ in procs:
            ready.acquire()
        redis_pids = master_pids(r, cluster)
        pids = [p.pid for p in procs if p.pid is not None]
        c0, s0, m0 = cpu_seconds(pids), cpu_seconds(redis_pids), busy_cores()
        t0 = time.perf_counter()
        go.set()
        for p in procs:
            p.join()
        dt = time.perf_counter() - t0
        c1, s1, m1 = cpu_seconds(pids), cpu_seconds(redis_pids), busy_cores()
        if not drained(r, keys, shards):
            raise RuntimeError("raw readers left entries unread")
        log(f"raw x{k}: {n:,} entries in {dt:.2f} s = {n / dt:,.0f}/s")
        return {"rate": n / dt, "seconds": dt, "client_cpu": cpu_share(c0, c1, dt), "redis_cpu": cpu_share(s0, s1, dt),
                "machine_busy": round((m1 - m0) / dt, 2)}
    finally:
        cleanup(r, keys, cluster)


# ------------------------------------------------------------------------------------------------
# engine: k `python -m command engine` processes
# ------------------------------------------------------------------------------------------------
def bench_engines(url: str, r: Any, cluster: bool, scenario_dir: Path, parts: list[list[dict[str, bytes]]],
                  k: int, batch: int, logs: Path) -> dict:
    keys = Keys(f"bench-scale-engine-{uuid.uuid4().hex[:8]}")
    shards = len(parts)
    n = sum(len(p) for p in parts)
    env = {**os.environ, "REDIS_URL": url, "ECD_LEASE_MS": str(LEASE_MS), "PYTHONPATH": str(ROOT)}
    procs: list[subprocess.Popen] = []
    try:
        load_namespace(r, keys, load_scenario(scenario_dir), shards=shards, mode="exercise")
        for s in range(shards):
            ensure_group(r, keys.shard_stream(s))
        for i in range(k):
            out = open(logs / f"{keys.ns}-e{i}.log", "w")  # noqa: SIM115 - the child keeps it
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "command", "engine", "--namespace", keys.ns, "--consumer", f"e{i}",
                 "--batch", str(batch), "--max-shards", str(math.ceil(shards / k))],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 120
        while True:  # every shard held (the lease keys), and each engine at its share
            held = [r.get(keys.shard_lease(s)) for s in range(shards)]
            if all(held) and len(set(held)) == min(k, shards):
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                tails = "\n".join((logs / f"{keys.ns}-e{i}.log").read_text()[-1500:] for i in range(k))
                raise RuntimeError(f"engines did not take the shards:\n{tails}")
            time.sleep(0.05)
        time.sleep(0.3)  # past the first poll: blocked in XREADGROUP, waiting
        for p in procs:
            p.send_signal(signal.SIGSTOP)
        log(f"engines x{k}: filling {n:,} readings into {shards} shards (engines frozen, not timed)")
        fill(r, keys, parts)
        redis_pids = master_pids(r, cluster)
        pids = [p.pid for p in procs]
        c0, s0, m0 = cpu_seconds(pids), cpu_seconds(redis_pids), busy_cores()
        t0 = time.perf_counter()
        for p in procs:
            p.send_signal(signal.SIGCONT)
        while not drained(r, keys, shards):
            time.sleep(0.02)
        dt = time.perf_counter() - t0
        c1, s1, m1 = cpu_seconds(pids), cpu_seconds(redis_pids), busy_cores()
        alerts = r.zcard(keys.alerts_index)
        log(f"engines x{k}: {n:,} readings in {dt:.2f} s = {n / dt:,.0f}/s, {alerts} alerts; "
            f"engine CPU {cpu_share(c0, c1, dt)}, Redis CPU {cpu_share(s0, s1, dt)}")
        return {"rate": n / dt, "seconds": dt, "alerts": alerts, "engine_cpu": cpu_share(c0, c1, dt),
                "redis_cpu": cpu_share(s0, s1, dt), "machine_busy": round((m1 - m0) / dt, 2)}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        cleanup(r, keys, cluster)


# ------------------------------------------------------------------------------------------------
# Reading the figures
# ------------------------------------------------------------------------------------------------
def limit_of(case: dict, cores: int) -> str:
    engine, red = case["engine_cpu"], case["redis_cpu"]
    total, busy = sum(engine) + sum(red), case["machine_busy"]
    if busy >= 0.85 * cores:
        return f"the machine's {cores} cores ({busy:.2f} busy, {total:.2f} of them ours)"
    if max(red) >= 0.85:
        return f"Redis ({max(red):.0%} of a core)"
    if max(engine) >= 0.85:
        return f"the engines ({max(engine):.0%} of a core each at most)"
    return f"neither CPU ({total:.2f} cores busy): waits on the round trips"


def projection(case: dict, readings: int, servers: int) -> dict[str, float]:
    """Readings/s for N cores from the CPU seconds per reading measured (see the module's text)."""
    e = sum(case["engine_cpu"]) * case["seconds"] / readings
    s = sum(case["redis_cpu"]) * case["seconds"] / readings / max(servers, 1)
    out = {}
    for n in (2, 4, 8, 16, 32):
        cores_for_engines = max(n - servers, 1)
        out[str(n)] = round(min(cores_for_engines / e if e else math.inf, servers / s if s else math.inf))
    out["engine_cpu_us_per_reading"] = round(e * 1e6, 1)
    out["redis_cpu_us_per_reading_per_server"] = round(s * 1e6, 1)
    return out


def print_table(res: dict) -> None:
    print(f"\nreadings/s through k engine processes ({res['readings']:,} readings, {res['shards']} shards, "
          f"batch {res['batch']}, {res['machine']['nproc']} cores: {res['machine']['cpu']})\n")
    head = f"{'backend':<10} {'k':>2} {'engines/s':>10} {'raw/s':>10} {'ratio':>6} {'speedup':>8}  " \
           f"{'engine CPU (cores)':<26} {'Redis CPU':<16} {'busy':>5}  limit"
    print(head)
    print("-" * len(head))
    for name, b in res["backends"].items():
        if "not_measured" in b:
            print(f"{name:<10} not measured: {b['not_measured']}")
            continue
        one = b["cases"]["1"]["engine"]["rate"]
        for k, c in b["cases"].items():
            e, raw = c["engine"], c["raw"]
            print(f"{name:<10} {k:>2} {e['rate']:>10,.0f} {raw['rate']:>10,.0f} {e['rate'] / raw['rate']:>6.2f} "
                  f"{e['rate'] / one:>7.2f}x  {' '.join(f'{x:.2f}' for x in e['engine_cpu']):<26} "
                  f"{' '.join(f'{x:.2f}' for x in e['redis_cpu']):<16} {e['machine_busy']:>5.2f}  {c['limit']}")
    print(f"\nprojection (readings/s on N cores, from the CPU per reading with {max(res['engine_counts'])} engines):")
    for name, b in res["backends"].items():
        if "projection" in b:
            p = b["projection"]
            cores = "  ".join(f"N={n}: {p[n]:,}" for n in ("2", "4", "8", "16", "32"))
            print(f"  {name:<8} engine {p['engine_cpu_us_per_reading']} us/reading, Redis "
                  f"{p['redis_cpu_us_per_reading_per_server']} us/reading per server -> {cores}")
    print(f"\nload average (1 min) before/after: {res['loadavg_1m'][0]:.2f} / {res['loadavg_1m'][1]:.2f}; "
          f"total {res['total_seconds']:.0f} s")


def run_backend(name: str, url: str, cluster: bool, scenario_dir: Path, parts: list, batch: int, counts: tuple,
                logs: Path, cores: int) -> dict:
    r = redis_client(url, "app")
    try:
        cases: dict[str, dict[str, Any]] = {}
        for k in counts:
            raw = bench_raw(url, r, cluster, parts, k, batch)
            eng = bench_engines(url, r, cluster, scenario_dir, parts, k, batch, logs)
            cases[str(k)] = {"engine": eng, "raw": raw, "limit": limit_of(eng, cores)}
        servers = len(master_pids(r, cluster))
        n = sum(len(p) for p in parts)
        return {"url": url, "servers": servers, "cases": cases,
                "projection": projection(cases[str(max(counts))]["engine"], n, servers)}
    finally:
        r.close()


def main(argv: list[str] | None = None) -> int:
    global _quiet
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke test)")
    p.add_argument("--readings", type=int, help="N (default 200,000; quick 20,000)")
    p.add_argument("--shards", type=int, default=4, help="shards of each namespace (default 4)")
    p.add_argument("--stations", type=int, default=500)
    p.add_argument("--batch", type=int, help="engine and raw batch (default Settings.engine_batch)")
    p.add_argument("--engines", default=",".join(map(str, ENGINE_COUNTS)), help="engine counts (default 1,2,4)")
    p.add_argument("--backends", default="redis,cluster", help="redis, cluster, or both (default)")
    p.add_argument("--replicas", type=int, default=0, help="replicas per cluster master (default 0)")
    p.add_argument("--silent", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)
    _quiet = args.silent
    batch = args.batch or Settings().engine_batch
    n = args.readings or (20_000 if args.quick else 200_000)
    counts = tuple(int(x) for x in args.engines.split(","))
    backends = [x.strip() for x in args.backends.split(",") if x.strip()]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    server = None
    cluster = None
    t_all = time.perf_counter()
    try:
        city = make_city(args.stations)
        stations = write_geojson(tmp / "stations.geojson", city.features)
        scenario_dir = write_scenario(tmp / "scale", "bench_scale", "scaling: registry only", stations,
                                      SAMPLE_DATA / "rules.yaml")
        parts = by_shard(stream_entries(city, n), args.shards)
        logs = tmp / "logs"
        logs.mkdir()
        res: dict[str, Any] = {"readings": n, "shards": args.shards, "batch": batch, "stations": city.n,
                               "engine_counts": list(counts), "backends": {}}
        url = os.environ.get("REDIS_URL")
        if "redis" in backends:
            if not url:
                server = EmbeddedRedis(tmp / "redis")
                url = server.start()
                log(f"one Redis: embedded at {url}")
            res["machine"] = machine(url)
            res["backends"]["redis"] = run_backend("redis", url, False, scenario_dir, parts, batch, counts, logs, cores)
        if "cluster" in backends:
            try:
                from tests.cluster.cluster import start_cluster
            except ImportError as exc:
                res["backends"]["cluster"] = {"not_measured": f"no cluster fixture ({exc})"}
            else:
                log(f"starting a 3-master Redis Cluster ({args.replicas} replicas each)")
                cluster = start_cluster(tmp / "cluster", masters=3, replicas=args.replicas)
                res.setdefault("machine", machine(cluster.url))
                res["backends"]["cluster"] = run_backend("cluster", cluster.url, True, scenario_dir, parts, batch,
                                                         counts, logs, cores)
        res["machine"]["nproc"] = cores
        res.update({"total_seconds": time.perf_counter() - t_all, "loadavg_1m": [load_before, os.getloadavg()[0]]})
        if args.json:
            print(json.dumps(res, default=float))
        else:
            print_table(res)
        return 0
    finally:
        if cluster is not None:
            cluster.stop()
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
