"""CPU time of one engine drain, and of the planning inside it, on `bench/engine.py`'s input.

    .venv/bin/python bench/engine_cpu.py [--rounds 5] [--readings 20000]

Wall-clock rates move with whatever else the machine runs; the CPU time this process spends in
`Engine.drain()` (`time.process_time`) moves much less, so a change of a few tens of percent in the
engine's own work shows. Prints the best of `--rounds` drains (each on a fresh namespace): the drain's
CPU time, the part spent in `engine_recommendations` (dispatch planning, docs/dispatch.md) and the
readings per CPU second. Uses ``REDIS_URL`` (required: a running Redis).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _bench_engine():
    spec = importlib.util.spec_from_file_location("bench_engine", ROOT / "bench" / "engine.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_engine"] = mod
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--readings", type=int, default=20_000)
    args = p.parse_args(argv)
    url = os.environ.get("REDIS_URL")
    if not url:
        p.error("set REDIS_URL to a running Redis")
    import redis

    import command.engine.consumer as consumer
    from command.engine.consumer import Engine
    from command.scenarios.namespaces import delete_namespace

    be = _bench_engine()
    tmp = Path(tempfile.mkdtemp())
    city = be.make_city(500)
    stations = be.write_geojson(tmp / "stations.geojson", city.features)
    folder = be.write_scenario(tmp / "engine", "bench_engine", "engine CPU", stations, be.SAMPLE_DATA / "rules.yaml")
    entries = be.stream_entries(city, args.readings)
    planning = [0.0]
    plan = consumer.engine_recommendations

    def timed(*a, **k):
        t0 = time.process_time()
        try:
            return plan(*a, **k)
        finally:
            planning[0] += time.process_time() - t0

    consumer.engine_recommendations = timed  # type: ignore[assignment]
    r = redis.Redis.from_url(url)
    runs = []
    for i in range(args.rounds):
        keys = be._engine_namespace(r, folder, entries, f"cpu{i}")
        eng = Engine(r, keys, batch=be.BATCH, consumer="bench-cpu")
        eng.start()
        planning[0] = 0.0
        t0 = time.process_time()
        n = eng.drain()
        runs.append((time.process_time() - t0, planning[0], n))
        eng.release()
        delete_namespace(r, keys)
    cpu, plan_s, n = min(runs)
    print(f"drain CPU {cpu:.3f} s (rounds: {', '.join(f'{x[0]:.3f}' for x in runs)}), planning {plan_s:.3f} s, "
          f"{n:,} readings, {n / cpu:,.0f} readings per CPU second")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
