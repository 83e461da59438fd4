"""The audit trail on the cluster: the chain, its anchors and the anchor loop, run unchanged there (the
trail's reads inside MULTI come back parsed: command/runtime/redis_client.py `_Pipeline._parsed`)."""

from tests.test_audit import *  # noqa: F403

# the two slowest run their processes through the command line and the supervisor, on one server too
del test_verify_cli_exit_codes  # noqa: F821
del test_python_app_runs_the_anchor_loop_and_the_trail_verifies_after_it_stops  # noqa: F821
