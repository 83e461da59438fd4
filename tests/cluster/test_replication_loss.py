"""Where the guarantee ends: Redis replicates asynchronously, so a master that dies can take with it
writes it had acknowledged but not yet sent to its replica. Measured here with a writer appending to a
stream as fast as it can while its master is SIGKILLed: acknowledged entries the promoted replica
does not hold are lost. Entries confirmed by WAIT (a replica has them) are never lost; that is what
the engine's cluster commit waits for between its two transactions (command/engine/slots.py)."""

from __future__ import annotations

import threading
import time

import redis

from command.runtime.redis_client import client

from .cluster import start_cluster

KEY = "{loss}:stream"


def _write_until_killed(cluster, confirm: bool) -> tuple[int, int]:
    """(acknowledged entries, of them missing after the failover)."""
    r = client(cluster.url, "probe")
    node = r.get_node_from_key(KEY)
    direct = node.redis_connection  # one master's connection: WAIT counts this connection's writes
    acked: list[bytes] = []
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            try:
                with direct.pipeline(transaction=False) as p:
                    p.xadd(KEY, {"n": len(acked)})
                    if confirm:
                        p.wait(1, 200)
                    out = p.execute()
            except redis.RedisError:
                return  # the master is gone
            if not confirm or out[1] >= 1:
                acked.append(out[0])

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.5)
    cluster.kill(cluster.master_of(KEY))
    t.join(10)
    stop.set()
    cluster.wait_ok(timeout=30)
    after = client(cluster.url, "app")
    present = {eid for eid, _ in after.xrange(KEY)}
    return len(acked), sum(1 for eid in acked if eid not in present)


def test_writes_confirmed_by_wait_survive_their_master_being_killed(tmp_path):
    with start_cluster(tmp_path / "a", masters=3, replicas=1) as cluster:
        acked, lost = _write_until_killed(cluster, confirm=False)
    with start_cluster(tmp_path / "b", masters=3, replicas=1) as cluster:
        confirmed, lost_confirmed = _write_until_killed(cluster, confirm=True)
    print(f"unconfirmed: {lost} of {acked} acknowledged entries lost; "
          f"confirmed by WAIT: {lost_confirmed} of {confirmed} lost")
    assert acked > 100 and confirmed > 50  # the writers were writing when their master died
    assert lost_confirmed == 0  # a replica held each of them: the promoted one has them all
