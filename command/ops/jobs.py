"""Background jobs (RQ): acknowledgement timers for department tasks, on the namespace's clock.

A task not acknowledged by its deadline is flagged for the command centre. The deadline is in the
namespace's time (scenario time in a drill), so the timer works at any replay speed: the job looks
at the clock and, if the deadline is still ahead, schedules itself again for when it should fall.
"""

from __future__ import annotations

from datetime import timedelta

import redis
from rq import Queue, get_current_job

from command.clock import namespace_now
from command.keys import RQ_QUEUE, Keys
from command.ops.dispatch import flag_unacknowledged, get_task

MIN_WAIT_S, MAX_WAIT_S = 0.5, 60.0


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
    r = job.connection
    keys = Keys(namespace)
    task = get_task(r, keys, task_id, None)
    if task.status != "assigned" or task.flagged:
        return "answered"
    now = namespace_now(r, keys)
    if now is not None and task.ack_deadline is not None and now >= task.ack_deadline:
        return "flagged" if flag_unacknowledged(r, keys, task_id, now) else "answered"
    speed = _speed(r, keys)
    # no clock yet (live before its first tick): nothing to measure the deadline by; look again later
    wait = MAX_WAIT_S if speed == 0 or now is None else (task.ack_deadline - now) / 1000 / speed
    schedule_ack_check(Queue(RQ_QUEUE, connection=r), namespace, task_id, min(max(wait, MIN_WAIT_S), MAX_WAIT_S))
    return "waiting"
