"""CPU time of one engine drain, and of the planning inside it, on `bench/engine.py`'s input.

    .venv/bin/python bench/engine_cpu.py [--rounds 5] [--readings 20000]

Wall-clock rates move with whatever else the machine runs; the CPU time this process spends in
`Engine.drain()` (`time.process_time`) moves much less, so a change of a few tens of percent in the
engine's own work shows. Prints the best of `--rounds` drains (each on a fresh namespace): the drain's
CPU time, the part spent in `engine_recommendations` (dispatch planning, docs/dispatch.md) and the
readings per CPU second, then that round's split per entry, CPU and wall: reading the batches
(`read_groups`, and the reply of the read sent ahead), evaluating them (`_handle` without its
commit), the commit (`_commit`: planning, the transaction `_write`, the rest: state export) and what is
left of the drain (lease checks, the collector between batches). Uses ``REDIS_URL`` (required: a
running Redis).
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
    from command.engine import slots
    from command.engine.consumer import Engine
    from command.scenarios.namespaces import delete_namespace

    be = _bench_engine()
    tmp = Path(tempfile.mkdtemp())
    city = be.make_city(500)
    stations = be.write_geojson(tmp / "stations.geojson", city.features)
    folder = be.write_scenario(tmp / "engine", "bench_engine", "engine CPU", stations, be.SAMPLE_DATA / "rules.yaml")
    entries = be.stream_entries(city, args.readings)
    spent: dict[str, list[float]] = {}  # phase -> [CPU s, wall s] of the current round

    def timed(owner, name: str, phase: str) -> None:
        fn = getattr(owner, name)

        def wrapper(*a, **k):
            c0, w0 = time.process_time(), time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc = spent.setdefault(phase, [0.0, 0.0])
                acc[0] += time.process_time() - c0
                acc[1] += time.perf_counter() - w0

        setattr(owner, name, wrapper)

    timed(consumer, "engine_recommendations", "planning")
    timed(slots, "read_groups", "read")
    timed(slots.ReadAhead, "result", "read")
    timed(Engine, "_handle", "handle")
    timed(Engine, "_commit", "commit")
    timed(Engine, "_write", "write")
    r = redis.Redis.from_url(url)
    runs = []
    for i in range(args.rounds):
        keys = be._engine_namespace(r, folder, entries, f"cpu{i}")
        eng = Engine(r, keys, batch=be.BATCH, consumer="bench-cpu")
        eng.start()
        spent.clear()
        t0, w0 = time.process_time(), time.perf_counter()
        n = eng.drain()
        runs.append((time.process_time() - t0, time.perf_counter() - w0, n, {k: tuple(v) for k, v in spent.items()}))
        eng.release()
        delete_namespace(r, keys)
    cpu, wall, n, split = min(runs, key=lambda x: x[0])
    zero = (0.0, 0.0)
    print(f"drain CPU {cpu:.3f} s (rounds: {', '.join(f'{x[0]:.3f}' for x in runs)}), "
          f"planning {split.get('planning', zero)[0]:.3f} s, {n:,} readings, {n / cpu:,.0f} readings per CPU second")

    def part(name: str, c: float, w: float) -> str:
        return f"  {name:<22} {c / n * 1e6:6.2f} {w / n * 1e6:6.2f}  {c / cpu:5.1%}"

    handle, commit, write, plan = (split.get(k, zero) for k in ("handle", "commit", "write", "planning"))
    read = split.get("read", zero)
    rows = [("read", *read), ("evaluate", handle[0] - commit[0], handle[1] - commit[1]),
            ("commit: planning", *plan), ("commit: transaction", *write),
            ("commit: rest", commit[0] - plan[0] - write[0], commit[1] - plan[1] - write[1]),
            ("rest of the drain", cpu - handle[0] - read[0], wall - handle[1] - read[1])]
    print(f"that round, per entry:  {'':<15}CPU us  wall us  of CPU\n"
          + "\n".join(part(*row) for row in rows)
          + f"\n  {'drain':<22} {cpu / n * 1e6:6.2f} {wall / n * 1e6:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
