"""The acknowledgement timers' sweep on the cluster: the timers registry (a global key) is kept beside
the namespace's transactions (command/runtime/redis_client.py, _AFTER_EXEC_KEYS)."""

from tests.faults.test_recovery import (  # noqa: F401 - the fixture and the tests, run here on the cluster
    dispatched,
    test_an_answered_task_is_not_flagged_by_the_sweep,
    test_the_timer_is_written_with_the_dispatch_and_the_sweep_keeps_it,
)
