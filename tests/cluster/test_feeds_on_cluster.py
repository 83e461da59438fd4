"""The feed framework, the external inputs and the drill runner, run unchanged on the cluster: their
batches span the shards' slots and the namespace's, written as one MULTI/EXEC per slot there
(command/runtime/redis_client.py SlotTransactions)."""

from tests.feeds.conftest import *  # noqa: F403
from tests.feeds.test_external_inputs import *  # noqa: F403
from tests.feeds.test_framework import *  # noqa: F403
from tests.test_drills import *  # noqa: F403

# watches the runner's writes with MONITOR, which sees one node only
del test_drill_state_is_written_only_when_it_changed  # noqa: F821
