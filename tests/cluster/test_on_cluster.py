"""The engine, replay, crash/reclaim, dispatch and read-model tests, run unchanged on the cluster: the
fixtures `r`, `redis_url` and `cli_env` point at it here (tests/cluster/conftest.py)."""

from tests.test_dispatch import *  # noqa: F403
from tests.test_engine import *  # noqa: F403
from tests.test_replay_cli import *  # noqa: F403
from tests.test_web import *  # noqa: F403

# RQ does not run on a Redis Cluster: its job queue has a plain Redis of its own (ECD_RQ_REDIS_URL), so
# the two tests that run RQ jobs on the test's Redis stay on one server.
del test_unacknowledged_task_is_flagged_on_the_namespace_clock  # noqa: F821
del test_without_a_namespace_clock_the_timer_waits_rather_than_read_the_wall_clock  # noqa: F821
# reads the alerts back with a plain one-server client (the CLI itself runs on the cluster above)
del test_redis_url_is_used  # noqa: F821
