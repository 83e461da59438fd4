"""Background jobs (RQ): acknowledgement timers for department tasks, on the namespace's clock.

A task not acknowledged by its deadline is flagged for the command centre. The deadline is in the
namespace's time (scenario time in a drill), so the timer works at any replay speed: the job looks
at the clock and, if the deadline is still ahead, schedules itself again for when it should fall.

The RQ job is the quick path; the timer itself is written with the dispatch, in its transaction
(`Keys.ack_timers`: task ids by deadline). The worker process also sweeps those every second
(`sweep_ack_timers`) and flags any task past its deadline, so a timer is kept even when its job was
never enqueued (the web process died between the dispatch and the enqueue), was lost, or waits on a
scheduler that is not running. Flagging is idempotent (under WATCH), so the job and the sweep may
both try. `run_worker` is `python -m command worker`: the RQ worker, started again when Redis drops
it, and the sweep beside it.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import timedelta

import redis
from rq import Queue, get_current_job
from rq.job import Job

from command.clock import namespace_now
from command.engine.consumer import backoff_delay
from command.errors import InvalidInput, NotFound
from command.keys import ACK_TIMER_NAMESPACES, RQ_BACKTEST_QUEUE, RQ_QUEUE, Keys
from command.ops.dispatch import flag_unacknowledged, get_task
from command.runtime.redis_client import as_unavailable, job_data

log = logging.getLogger(__name__)
MIN_WAIT_S, MAX_WAIT_S = 0.5, 60.0
SWEEP_EVERY_S = 1.0


def _speed(r: redis.Redis, keys: Keys) -> float:
    """Scenario ms per wall ms: the drill's replay speed, 1 live; a paused drill waits at the longest."""
    ctl = r.hgetall(keys.replay_control)
    if not ctl:
        return 1.0
    if ctl.get(b"paused") == b"1":
        return 0.0
    if ctl.get(b"speed") == b"max":
        return 1e9  # the clock jumps: look again soon
    try:
        speed = float(ctl.get(b"speed", b"1"))
    except ValueError:
        return 1.0
    return speed if speed > 0 else 1.0


def schedule_ack_check(queue: Queue, namespace: str, task_id: str, wait_s: float) -> None:
    queue.enqueue_in(timedelta(seconds=wait_s), check_acknowledgement, namespace, task_id,
                     job_timeout=30, result_ttl=600, failure_ttl=7 * 86400)


def check_acknowledgement(namespace: str, task_id: str) -> str:
    """The RQ job: flag the task if its deadline passed unacknowledged; else look again later."""
    job = get_current_job()
    assert job is not None  # RQ runs this as a job
    r = job_data(job.connection)  # REDIS_URL's data when the job queue has a Redis of its own
    keys = Keys(namespace)
    task = get_task(r, keys, task_id, None)
    if task.status != "assigned" or task.flagged or task.ack_deadline is None:  # (no deadline: never flagged)
        r.zrem(keys.ack_timers, task_id)
        return "answered"
    now = namespace_now(r, keys)
    if now is not None and task.ack_deadline is not None and now >= task.ack_deadline:
        outcome = "flagged" if flag_unacknowledged(r, keys, task_id, now) else "answered"
        r.zrem(keys.ack_timers, task_id)
        return outcome
    speed = _speed(r, keys)
    # no clock yet (live before its first tick): nothing to measure the deadline by; look again later
    wait = MAX_WAIT_S if speed == 0 or now is None else (task.ack_deadline - now) / 1000 / speed
    schedule_ack_check(Queue(RQ_QUEUE, connection=job.connection), namespace, task_id, min(max(wait, MIN_WAIT_S), MAX_WAIT_S))
    return "waiting"


# ---- the sweep: timers written with the dispatch, whatever became of their jobs ----------------------
def sweep_ack_timers(r: redis.Redis) -> int:
    """Flag every task whose deadline has passed on its namespace's clock and that is still
    unacknowledged; forget the timers that are done. Returns how many tasks were flagged now."""
    flagged = 0
    for raw in r.smembers(ACK_TIMER_NAMESPACES):
        ns = raw.decode()
        try:
            keys = Keys(ns)
        except (InvalidInput, ValueError):
            r.srem(ACK_TIMER_NAMESPACES, raw)
            continue
        now = namespace_now(r, keys)
        if now is None:  # live before its first tick: nothing to measure the deadlines by yet
            continue
        for tid in r.zrangebyscore(keys.ack_timers, "-inf", now, start=0, num=500):
            task_id = tid.decode()
            try:
                if flag_unacknowledged(r, keys, task_id, now):
                    flagged += 1
                    log.info("ack timer: task %s of %s flagged by the sweep", task_id, ns)
            except NotFound:
                pass  # the namespace was deleted under us
            r.zrem(keys.ack_timers, task_id)
        with r.pipeline() as pipe:  # a namespace with no timer left leaves the list
            try:
                pipe.watch(keys.ack_timers)
                if pipe.zcard(keys.ack_timers) == 0:
                    pipe.multi()
                    pipe.srem(ACK_TIMER_NAMESPACES, ns)
                    pipe.execute()
            except redis.WatchError:
                pass  # a dispatch added one meanwhile
    return flagged


def run_sweeper(r: redis.Redis, stop: threading.Event, every: float = SWEEP_EVERY_S) -> None:
    """`sweep_ack_timers` every `every` s until `stop`; Redis being away is waited out, and a failing
    sweep is logged and tried again, never the end of the timers."""
    failures = 0
    while not stop.is_set():
        try:
            sweep_ack_timers(r)
            failures = 0
        except Exception as exc:  # noqa: BLE001 - the sweep must outlive any one failure
            failures += 1
            err = as_unavailable(exc)
            if err is None:
                log.exception("ack timer sweep failed")
            else:
                log.warning("ack timer sweep: %s; again in a moment", err.message)
            stop.wait(backoff_delay(failures, first=every, cap=30.0))
            continue
        stop.wait(every)


def run_worker(r: redis.Redis, sweep_r: redis.Redis, *, burst: bool = False, backtests: bool = False,
               backoff: tuple[float, float] = (0.5, 30.0)) -> int:
    """`python -m command worker`: the RQ worker (with its scheduler) and the ack-timer sweep beside it;
    with `backtests` (`worker --backtests`), the backtests' worker instead (their queue only, no sweep),
    so that a long backtest never holds up an acknowledgement check.

    RQ's worker quits its loop when Redis times out or drops it; it is started again after a back-off
    until SIGTERM or SIGINT asks it to stop (a warm stop: the job at hand finishes). `burst`: work
    until every queue is empty (acknowledgement checks first, then backtests), sweep once, return."""
    from rq import Worker

    if burst:
        Worker([Queue(RQ_QUEUE, connection=r), Queue(RQ_BACKTEST_QUEUE, connection=r)],
               connection=r).work(with_scheduler=True, burst=True)
        sweep_ack_timers(sweep_r)
        return 0
    queue = RQ_BACKTEST_QUEUE if backtests else RQ_QUEUE
    stop = threading.Event()
    sweeper = None if backtests else threading.Thread(target=run_sweeper, args=(sweep_r, stop),
                                                      name="ack-timer-sweep", daemon=True)
    if sweeper is not None:
        sweeper.start()
    failures = 0
    try:
        while not stop.is_set():
            worker = Worker([Queue(queue, connection=r)], connection=r)
            began = time.monotonic()
            try:
                worker.work(with_scheduler=True)
                why = "its loop ended"
            except Exception as exc:  # raised before its loop (registering with Redis)
                err = as_unavailable(exc)
                if err is None:
                    raise
                why = err.message
            if worker._shutdown_requested_date is not None:  # SIGTERM or SIGINT (RQ's own handlers)
                return 0
            for sig in (signal.SIGINT, signal.SIGTERM):  # RQ's handlers belong to the worker that ended
                signal.signal(sig, lambda *_: stop.set())
            failures = 1 if time.monotonic() - began > 60 else failures + 1
            delay = backoff_delay(failures, first=backoff[0], cap=backoff[1])
            log.warning("RQ worker stopped (%s); starting it again in %.1f s", why, delay)
            stop.wait(delay)
        return 0
    finally:
        stop.set()
        if sweeper is not None:
            sweeper.join(5)


# ---- backtests started on the exercise page -------------------------------------------------------------
BACKTEST_TIMEOUT_S = 900


def run_backtest_job(scenario: str, rules: list[str], out: str, lead_window_ms: int | None = None) -> dict:
    """The RQ job behind /exercise's rule set comparison: `python -m command backtest` on the worker,
    its progress in the job's meta (`progress` 0-100, `step`), backtest.json, backtest.html and the
    station charts (charts.json) in `out`. Bad input is an answer (`error`), not a failed job."""
    from command.errors import CommandError
    from command.scenarios.backtest import prepare, run_backtest

    job = get_current_job()
    assert job is not None  # RQ runs this as a job
    progress = JobProgress(job)
    try:
        inp = prepare(scenario, rules)
        res = run_backtest(job_data(job.connection), inp, lead_window_ms=lead_window_ms, progress=progress)
    except CommandError as exc:
        return {"error": exc.message}
    from pathlib import Path

    from command.publish.backtest_html import render_html, station_charts
    from command.scenarios.backtest import write_outputs

    charts = station_charts(inp.scenario, inp.series, inp.truth, res.runs)
    folder = Path(out)
    write_outputs(folder, res.report, render_html(res.report, charts))
    import orjson

    (folder / "charts.json").write_bytes(orjson.dumps(charts, option=orjson.OPT_SERIALIZE_NUMPY))
    progress.finish()
    return {"out": out, "seconds": round(res.seconds, 1)}


class JobProgress:
    """A backtest's progress (`BacktestProgress`'s calls) in its RQ job's meta, written at most twice a second."""

    def __init__(self, job: Job, every_s: float = 0.5) -> None:
        self.job, self.every_s, self._last = job, every_s, 0.0

    def update(self, index: int, count: int, name: str, fraction: float) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s and fraction < 1.0:
            return
        self._last = now
        self.job.meta.update(progress=round(100 * (index + min(max(fraction, 0.0), 1.0)) / max(count, 1), 1),
                             step=f"{index + 1}/{count} {name}")
        self.job.save_meta()

    def message(self, text: str) -> None:
        pass

    def done(self) -> None:
        pass

    def finish(self) -> None:
        self.job.meta.update(progress=100.0, step="")
        self.job.save_meta()
