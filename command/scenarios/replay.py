"""The whole pipeline in one process: replay feed -> streams -> engine -> alerts -> recommendations.

Used by `python -m command replay` (and the benchmarks). It runs the same feed and engine code as
live operation; only the namespace (one per replay) and the clock (the replay clock) differ. The
drill runner (`command.ops.drills`) steps the same feed, clock and engine for the exercise page.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import redis

from command.config import DEFAULT_ENGINE_BATCH
from command.engine.consumer import Engine
from command.keys import Keys
from command.publish.report import write_outputs
from command.scenarios.actions import write_tasks
from command.scenarios.clock import ReplayClock
from command.scenarios.feed import ReplayFeed
from command.scenarios.load import load_scenario
from command.scenarios.namespaces import delete_namespace, load_namespace, new_namespace
from command.streams import shard_count
from command.timeutil import to_iso


@dataclass
class ReplayResult:
    namespace: str
    readings: int
    entries: int
    alerts: int
    seconds: float
    report: dict | None


class Progress:
    """One status line, rewritten in place on a terminal and printed every ~10% otherwise."""

    def __init__(self, stream: TextIO = sys.stderr, tz: str | None = None) -> None:
        self.stream, self.tz = stream, tz
        self.tty = stream.isatty()
        self._last = -1.0
        self._last_pct: float = -10

    def __call__(self, feed: ReplayFeed, engine: Engine, final: bool = False) -> None:
        now = time.monotonic()
        pct = 100 * feed.published / max(feed.total, 1)
        if not final and (now - self._last < 0.5 or (not self.tty and pct - self._last_pct < 10)):
            return
        self._last, self._last_pct = now, pct
        line = (f"replay {pct:5.1f}%  scenario time {to_iso(feed.clock_t, self.tz)}  "
                f"entries {feed.published}/{feed.total}  processed {engine.processed}  alert events {engine.alert_events}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def run_replay(r: redis.Redis, scenario_dir: str | Path, *, speed: float | None = None, out: Path | None = None,
               namespace: str | None = None, shards: int = 1, run_engine: bool = True, keep: bool = True,
               batch: int = DEFAULT_ENGINE_BATCH, progress: Callable | None = None, stop: Callable[[], bool] | None = None,
               clock: ReplayClock | None = None) -> ReplayResult:
    """Replay a scenario into its own namespace and (unless `run_engine` is False) evaluate it.

    Raises ScenarioError before touching Redis when the scenario is malformed.
    """
    t0 = time.perf_counter()
    sc = load_scenario(scenario_dir)
    keys = Keys(namespace or new_namespace(sc.name))
    load_namespace(r, keys, sc, shards=shards, mode="exercise")
    shards = shard_count(r, keys, shards)  # an existing namespace keeps the shard count it was made with
    engine = Engine(r, keys, batch=batch, consumer=f"replay-{keys.ns}") if run_engine else None
    if engine is not None:
        engine.start()
    drain = engine.drain if engine is not None else None
    feed = ReplayFeed(r, keys, sc, shards=shards, before_inject=drain)
    clock = clock or ReplayClock(sc.start, speed)
    if isinstance(progress, Progress) and progress.tz is None:
        progress.tz = sc.timezone

    def report_progress(f: ReplayFeed) -> None:
        if progress is not None and engine is not None:
            progress(f, engine)

    try:
        feed.run(clock, on_progress=report_progress, after_publish=drain, stop=stop)
        if engine is not None:
            engine.drain()
            if progress is not None:
                progress(feed, engine, final=True)
    finally:
        if engine is not None:
            engine.release()
    report = write_outputs(r, keys, out) if out is not None else None
    if out is not None:
        write_tasks(r, keys, out)  # each task's final status and history (scripted actions, docs/scenarios.md)
    alerts = r.zcard(keys.alerts_index)
    if not keep:
        delete_namespace(r, keys)
    return ReplayResult(keys.ns, len(sc.readings), feed.published, alerts, time.perf_counter() - t0, report)
