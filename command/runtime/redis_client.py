"""Every Redis client of flood command is built here: timeouts, retries, keepalive and health checks
in one place, one of three kinds by what the caller can afford when Redis goes away.

- ``"app"`` (the web app, the RQ worker, one-shot CLI commands): a command that fails on the way
  (refused connection, timeout, a server still loading its data) is tried again,
  ``Retry(ExponentialBackoff(cap, 0.1), retries)``. Commands that must not run twice are WATCHed
  transactions (dispatch, task updates, alert actions, the audit chain): redis-py never re-sends
  those, it raises WatchError and the command reads again and decides again.
- ``"loop"`` (the long-running loops that must neither lose nor double input: the rule engine, the
  drill runner, the feeds runner, the ack-timer sweep): a command is tried again only when it cannot
  have run, i.e. it never reached Redis (refused or timed-out connect) or Redis refused it while
  loading (`UnsentRetry`). Any other failure (a timeout waiting for the answer, a connection dropped
  after sending) leaves the outcome unknown: the error reaches the loop, which backs off, forgets
  what it holds in memory and resumes from what Redis committed (consumer group pending entries,
  leases, the drill's saved position, high-water marks). Re-sending instead would double an XADD or
  strand an XREADGROUP batch when Redis ran the first copy after all (a stalled server runs what
  is in its socket buffer when it resumes). A loop's client also refuses, once, a new connection to
  a server that is not the one it was talking to (`ServerFence`): a restarted Redis reloads its
  AOF, which may end before the last writes it acknowledged (`appendfsync everysec`), so what the
  loop holds in memory may be ahead of it. The refusal reaches the loop like any outage and the
  loop resumes from what the new server holds.
- ``"probe"`` (/health, the supervisor's checks, the embedded server's start and stop): short
  timeouts, no retry: it says how Redis is now.

Every kind has TCP keepalive on and a health check (PING) on a connection idle for
`Settings.redis_health_check_s`. `trouble(exc)` says whether an error means "Redis is not
available or refuses writes now" (wait and retry) or something else (a bug: raise).

A Redis Cluster is found by asking the server (`INFO cluster` says `cluster_enabled:1`, once per URL
and process; `ECD_REDIS_CLUSTER` says it instead): `client` then builds redis-py's `RedisCluster` on
that node, with the same timeouts. It follows MOVED and refreshes its slot map after a connection
error; for "app" it tries a command again up to `redis_retries` times over the refreshed map, for
"loop" never (the loop backs off and resumes from what was committed, as on one server). A failover
(CLUSTERDOWN, TRYAGAIN, a master gone) is `trouble` like a server that is down. RQ does not run on a
cluster: `rq_url` gives the job queue its plain Redis (`ECD_RQ_REDIS_URL`).
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any, Literal, cast

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.client import EMPTY_RESPONSE, list_or_args
from redis.cluster import ClusterPipeline, RedisCluster, TransactionStrategy
from redis.commands.cluster import READ_COMMANDS
from redis.retry import Retry

from command.config import Settings
from command.keys import ACK_TIMER_NAMESPACES, AUDIT_NAMESPACES

Purpose = Literal["app", "loop", "probe"]
RETRY_BASE_S = 0.1
# What "try again" covers: the server was not reachable, did not answer in time, or is loading.
RETRYABLE: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
# A cluster in the middle of a failover or a resharding: the slot has no master for now, or is moving.
_CLUSTER_TROUBLE: tuple[type[Exception], ...] = (
    redis.exceptions.ClusterDownError, redis.exceptions.TryAgainError, redis.exceptions.SlotNotCoveredError,
    redis.exceptions.ClusterError)
# Refusals of writes that waiting may cure: memory full (maxmemory), a failed snapshot
# (stop-writes-on-bgsave-error), a read-only replica.
_WRITE_REFUSALS = ("OOM ", "MISCONF ", "READONLY ")


def _never_sent(error: Exception) -> bool:
    """Did this error happen before the command reached Redis (or did Redis refuse to run it)?"""
    if isinstance(error, redis.BusyLoadingError):
        return True  # LOADING: refused, not run
    if isinstance(error, (redis.AuthenticationError, redis.exceptions.AuthorizationError)):
        return False  # waiting does not fix credentials
    text = str(error)
    # redis-py's connect errors: "Error 111 connecting to 127.0.0.1:6379. Connection refused." and
    # "Timeout connecting to server"; an error while reading an answer says "reading" or "closed".
    return isinstance(error, (redis.ConnectionError, redis.TimeoutError)) and (
        " connecting to " in text or text.startswith("Timeout connecting"))


class UnsentRetry(Retry):
    """A Retry that tries again only when the command cannot have run (`_never_sent`)."""

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        def retryable(error: Exception) -> bool:
            return _never_sent(error) and (is_retryable is None or is_retryable(error))

        return super().call_with_retry(do, fail, is_retryable=retryable, with_failure_count=with_failure_count)


class ServerRestarted(redis.ConnectionError):
    """A loop's client reached a Redis that is not the one it was talking to (a new run id)."""


class ServerFence:
    """A connection hook (redis-py's `redis_connect_func`) for a loop's client: each new connection asks
    the server its run id (`INFO server`, once per connection). The first server is taken as it is.
    A connection to another one (Redis restarted, perhaps from an AOF that ends before what this
    process wrote) fails once with `ServerRestarted`; the loop backs off, forgets what it holds and
    resumes from what the new server holds, and the connections after that are let through. Without
    it, the client's own retry of a refused connect would carry on, unnoticed, from memory that is
    ahead of the data (input lost: tests/faults/test_recovery.py). A reconnection to the same
    server (a dropped connection) is let through: nothing was lost."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        self._lock = threading.Lock()

    def __call__(self, conn: Any) -> None:
        conn.on_connect()
        run_id = _run_id(conn)
        with self._lock:
            before, self.run_id = self.run_id, run_id or self.run_id
        if before is not None and run_id is not None and run_id != before:
            raise ServerRestarted(f"Redis was restarted (run {before[:8]}, now {run_id[:8]}); "
                                  "resuming from what it holds")


def _run_id(conn: Any) -> str | None:
    """The server's run id, asked on a new connection; None when it will not say (INFO refused)."""
    conn.send_command("INFO", "server")
    try:
        info = conn.read_response()
    except redis.ResponseError:
        return None  # e.g. an ACL user without INFO: no fence, as before
    text = info.decode(errors="replace") if isinstance(info, bytes) else str(info)
    for line in text.splitlines():
        if line.startswith("run_id:"):
            return line[7:].strip()
    return None


def _options(purpose: Purpose, settings: Settings) -> dict[str, Any]:
    backoff = ExponentialBackoff(cap=settings.redis_retry_cap, base=RETRY_BASE_S)
    common: dict[str, Any] = {"socket_keepalive": True, "health_check_interval": settings.redis_health_check_s}
    if purpose == "probe":
        t = settings.health_timeout
        return {**common, "socket_timeout": t, "socket_connect_timeout": t, "retry": Retry(backoff, 0),
                "health_check_interval": 0}
    if purpose == "loop":
        common["redis_connect_func"] = ServerFence()  # one per client (or shared pool)
    retry_cls = UnsentRetry if purpose == "loop" else Retry
    return {**common, "socket_timeout": settings.redis_timeout, "socket_connect_timeout": settings.redis_connect_timeout,
            "retry": retry_cls(backoff, settings.redis_retries, supported_errors=RETRYABLE)}


_CLUSTER_MODE: dict[str, bool] = {}  # URL -> the server's answer, once per process


@functools.cache
def _configured_cluster() -> bool | None:
    """ECD_REDIS_CLUSTER, read once per process: `pooled` runs at every web request, and building
    Settings (environment and .env) cost about 9 ms each time (bench/web_load.py profile)."""
    return Settings().redis_cluster


def is_cluster(url: str, settings: Settings | None = None, *, fresh: bool = False, timeout: float = 2.0) -> bool:
    """Is `url` a node of a Redis Cluster? `settings.redis_cluster` when set, else the server's own
    `INFO cluster`: asked once per URL and process, or again with `fresh` (`client` does: a client is
    built rarely, and a URL may name another server since, e.g. a port reused). A server that does
    not answer is taken for one server, not remembered: the next client built asks again. `timeout`:
    how long to wait for the answer (/health's probe waits less: it must answer within a second or so)."""
    said = settings.redis_cluster if settings is not None else _configured_cluster()
    if said is not None:
        return said
    if url in _CLUSTER_MODE and not fresh:
        return _CLUSTER_MODE[url]
    probe = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=min(1.0, timeout),
                                 retry=Retry(NoBackoff(), 0))
    try:
        enabled = str(probe.info("cluster").get("cluster_enabled", 0)) == "1"
    except redis.ResponseError:
        enabled = False  # a server (or proxy) that has no INFO cluster section
    except redis.RedisError:
        return False
    finally:
        probe.close()
    _CLUSTER_MODE[url] = enabled
    return enabled


# Global registries of namespaces (command/keys.py) that a namespace's transactions add their namespace
# to. On a cluster they live in another slot than the namespace's keys, so inside a transaction their
# SADD is held back and sent right after a successful EXEC (`_Pipeline`). Both readers already cope with
# a missing entry: the audit anchor loop also finds trails by SCAN at its start, and an acknowledgement
# timer's RQ job flags its task whether or not the sweep knows the namespace.
_AFTER_EXEC_KEYS = frozenset({AUDIT_NAMESPACES, ACK_TIMER_NAMESPACES})


class _Pipeline(ClusterPipeline):
    """A cluster pipeline. redis-py blocks multi-key commands in a cluster pipeline whatever their keys;
    within one hash slot (a namespace's keys, command/keys.py) Redis runs them, so they are let through
    here. Keys in different slots still fail, with Redis's CROSSSLOT error: a key layout bug. In a
    transaction, the SADDs to the global registries wait for the EXEC (`_AFTER_EXEC_KEYS`)."""

    def __init__(self, *args: Any, owner: RedisCluster, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owner = owner
        self._after_exec: list[tuple[Any, ...]] = []

    def _in_transaction(self) -> bool:
        # (not `self.transaction`: on a cluster client that name is a method, always true)
        return isinstance(self._execution_strategy, TransactionStrategy)

    def _queued(self) -> bool:
        """Is a command issued now queued in a MULTI (rather than sent at once, or not a transaction)?"""
        strategy = self._execution_strategy
        return self._in_transaction() and not (getattr(strategy, "_watching", False)
                                               and not getattr(strategy, "_explicit_transaction", False))

    def sadd(self, name: Any, *values: Any) -> Any:
        key = name.decode() if isinstance(name, bytes) else name
        if key in _AFTER_EXEC_KEYS and self._queued():
            self._after_exec.append(("SADD", name, *values))
            return self
        return super().sadd(name, *values)

    def srem(self, name: Any, *values: Any) -> Any:
        # the ack-timer sweep drops a namespace with no timer left (WATCHed on its timers): after the
        # EXEC, here. A dispatch landing in between re-adds it after its own EXEC, and its RQ job flags
        # its task whatever the registry says.
        key = name.decode() if isinstance(name, bytes) else name
        if key in _AFTER_EXEC_KEYS and self._queued():
            self._after_exec.append(("SREM", name, *values))
            return self
        return super().srem(name, *values)

    def execute(self, raise_on_error: bool = True) -> Any:
        after, self._after_exec = self._after_exec, []
        queued = [(c.args[0], c.options) for c in getattr(self._execution_strategy, "_command_queue", ())] \
            if self._in_transaction() else []
        result = super().execute(raise_on_error)
        if queued and len(queued) == len(result):
            result = self._parsed(queued, result)
        for command in after:
            self._owner.execute_command(*command)
        return result

    def _parsed(self, queued: list[tuple[Any, dict]], replies: list[Any]) -> list[Any]:
        """redis-py (8.1) runs only its cluster-level callbacks on a transaction's replies: an XRANGE
        inside MULTI comes back as raw lists, a PEXPIRE as 1. The usual per-command parsing, here."""
        callbacks = self._owner.get_default_node().redis_connection.response_callbacks
        out = []
        for (name, options), reply in zip(queued, replies, strict=True):
            command = name.decode() if isinstance(name, bytes) else str(name)
            if not isinstance(reply, Exception) and command not in self.cluster_response_callbacks \
                    and command in callbacks:
                opts = {k: v for k, v in options.items() if k not in ("keys", EMPTY_RESPONSE)}
                reply = callbacks[command](reply, **opts)
            out.append(reply)
        return out

    def reset(self) -> None:
        super().reset()
        self._after_exec = []

    def mget(self, keys: Any, *args: Any) -> Any:
        return self.execute_command("MGET", *list_or_args(keys, args))

    def mset(self, mapping: dict) -> Any:
        return self.execute_command("MSET", *[x for pair in mapping.items() for x in pair])

    def sunion(self, keys: Any, *args: Any) -> Any:
        return self.execute_command("SUNION", *list_or_args(keys, args))

    def sinter(self, keys: Any, *args: Any) -> Any:
        return self.execute_command("SINTER", *list_or_args(keys, args))

    def rename(self, src: Any, dst: Any) -> Any:
        return self.execute_command("RENAME", src, dst)


class _Cluster(RedisCluster):
    """redis-py's cluster client whose `pipeline()` is a MULTI/EXEC transaction by default, as
    `redis.Redis.pipeline()` is (every WATCHed read-decide-write of the code base relies on that);
    `pipeline(transaction=False)` is the batched, slot-split pipeline."""

    def _execute_pipeline_by_slot(self, command: str, slots_to_args: Any) -> list[Any]:
        # redis-py's own split of a multi-key command by slot (DEL, EXISTS, UNLINK, TOUCH, MGET/MSET
        # non-atomic) runs on `self.pipeline()`, which means a plain pipeline there, not a transaction
        read_from_replicas = self.read_from_replicas and command in READ_COMMANDS
        pipe = self.pipeline(transaction=False)
        for slot, slot_args in slots_to_args.items():
            pipe.execute_command(command, *slot_args,
                                 target_nodes=[self.nodes_manager.get_node_from_slot(slot, read_from_replicas)])
        return pipe.execute()

    def pipeline(self, transaction: bool | None = True, shard_hint: Any = None) -> Any:
        if shard_hint:
            raise redis.exceptions.RedisClusterException("shard_hint is deprecated in cluster mode")
        return _Pipeline(
            nodes_manager=self.nodes_manager, commands_parser=self.commands_parser,
            startup_nodes=self.nodes_manager.startup_nodes, result_callbacks=self.result_callbacks,
            cluster_response_callbacks=self.cluster_response_callbacks, read_from_replicas=self.read_from_replicas,
            load_balancing_strategy=self.load_balancing_strategy, reinitialize_steps=self.reinitialize_steps,
            retry=self.retry, lock=self._lock, transaction=transaction, event_dispatcher=self._event_dispatcher,
            owner=self)


def _cluster_client(url: str, purpose: Purpose, opts: dict[str, Any]) -> RedisCluster:
    # The nodes' connections take the timeouts and keepalive; the cluster's own retry (a command tried
    # again over a refreshed slot map) is `redis_retries` for "app", none for "loop" and "probe": the
    # cluster client re-sends on any connection error, sent or not, which a loop must never do.
    retry = opts.pop("retry")
    opts.pop("redis_connect_func", None)  # the cluster client sets its own hook on its nodes: no fence there
    cluster_retry = retry if purpose == "app" else Retry(NoBackoff(), 0)
    return _Cluster.from_url(url, retry=cluster_retry, **opts)


def on_cluster(r: Any) -> bool:
    """Is `r` a Redis Cluster client (so a shard's keys and its namespace's keys are in two slots)?"""
    return isinstance(r, RedisCluster)


_SHARD_TAG = re.compile(r"\{[^}]*:s\d+\}")  # a shard's hash tag, `{ns:sN}` (command/keys.py)


class SlotTransactions:
    """A pipeline for a Redis Cluster whose commands span slots: one MULTI/EXEC per hash slot, the
    shards' slots first and the rest (the namespace's: a feed's high-water marks, a drill's
    position) last, so what records progress lands only after what it records. Each slot's part is
    atomic; the whole is not: a writer that dies between two parts leaves entries without their
    progress mark, and re-sends them when it resumes (at-least-once input: docs/architecture.md,
    Redis Cluster). On one server `transactional_pipeline` gives the usual single MULTI/EXEC."""

    def __init__(self, r: Any) -> None:
        self.r = r
        self._commands: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        def queue(*args: Any, **kwargs: Any) -> SlotTransactions:
            self._commands.append((name, args, kwargs))
            return self
        return queue

    def __len__(self) -> int:
        return len(self._commands)

    def __enter__(self) -> SlotTransactions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reset()

    def reset(self) -> None:
        self._commands = []

    def execute(self, raise_on_error: bool = True) -> list:
        commands, self._commands = self._commands, []
        groups: dict[int, list[int]] = {}
        for i, (_, args, _kw) in enumerate(commands):
            groups.setdefault(self.r.keyslot(args[0]), []).append(i)
        order = sorted(groups, key=lambda slot: (not _SHARD_TAG.search(_as_str(commands[groups[slot][0]][1][0])),
                                                 groups[slot][0]))
        results: list[Any] = [None] * len(commands)
        for slot in order:
            with self.r.pipeline(transaction=True) as pipe:
                for i in groups[slot]:
                    name, args, kwargs = commands[i]
                    getattr(pipe, name)(*args, **kwargs)
                for i, res in zip(groups[slot], pipe.execute(raise_on_error), strict=True):
                    results[i] = res
        return results


def _as_str(key: Any) -> str:
    return key.decode(errors="replace") if isinstance(key, bytes) else str(key)


def transactional_pipeline(r: Any) -> Any:
    """`r.pipeline(transaction=True)` on one server; on a cluster, `SlotTransactions` (one MULTI/EXEC
    per slot) for writers whose batch spans shards and the namespace (the feeds, the drill runner)."""
    return SlotTransactions(r) if on_cluster(r) else r.pipeline(transaction=True)


def client(url: str, purpose: Purpose = "app", *, settings: Settings | None = None, **overrides: Any) -> redis.Redis:
    """A client on `url` for `purpose` (see the module's text); `overrides` are redis-py keywords.
    On a Redis Cluster node, a `RedisCluster` (the same commands; typed as `redis.Redis` for callers)."""
    settings = settings or Settings()
    opts = _options(purpose, settings)
    opts.update(overrides)
    if is_cluster(url, settings, fresh=True):
        return cast(redis.Redis, _cluster_client(url, purpose, opts))
    return redis.Redis.from_url(url, **opts)


@functools.cache
def shared_pool(url: str, purpose: Purpose = "app") -> redis.ConnectionPool:
    """One connection pool per process, URL and purpose (the web workers' clients share it)."""
    return redis.ConnectionPool.from_url(url, **_options(purpose, Settings()))


@functools.cache
def _shared_cluster(url: str, purpose: Purpose) -> RedisCluster:
    return _cluster_client(url, purpose, _options(purpose, Settings()))


def pooled(url: str, purpose: Purpose = "app") -> redis.Redis:
    """The process's one client for `url` and `purpose`, on its shared pool (call it at every request).
    On a cluster, the process's one `RedisCluster` for them (it keeps a pool per node)."""
    if is_cluster(url, timeout=0.3 if purpose == "probe" else 2.0):
        return cast(redis.Redis, _shared_cluster(url, purpose))
    return _shared_client(url, purpose)


@functools.cache
def _shared_client(url: str, purpose: Purpose) -> redis.Redis:
    # one object, not one per request: building a redis.Redis fills its table of ~170 response
    # callbacks (~0.15 ms, twice per web request before); the client is thread-safe, its pool shared
    return redis.Redis(connection_pool=shared_pool(url, purpose))


class RqOnCluster(ValueError):
    """The job queue would run on a Redis Cluster, which RQ does not support."""


def rq_url(settings: Settings, url: str) -> str:
    """The plain Redis of the RQ job queue: `ECD_RQ_REDIS_URL`, else `url` (REDIS_URL or the embedded
    server) when that is one server. On a cluster with no ECD_RQ_REDIS_URL: `RqOnCluster`, raised at
    startup by the supervisor and the worker rather than failing at the first job."""
    if settings.rq_redis_url:
        return settings.rq_redis_url
    if is_cluster(url, settings):
        raise RqOnCluster(f"REDIS_URL {url} is a Redis Cluster node and RQ does not support Redis Cluster: "
                          "set ECD_RQ_REDIS_URL to a plain Redis server for the job queue")
    return url


def rq_connection(data: redis.Redis, settings: Settings | None = None) -> redis.Redis:
    """The Redis for RQ (its queue, its jobs) beside the data client `data`: `data` itself on one server
    with no ECD_RQ_REDIS_URL (as always), else a pooled plain client on ECD_RQ_REDIS_URL;
    `RqOnCluster` when `data` is a cluster and none is given."""
    settings = settings or Settings()
    if settings.rq_redis_url:
        return pooled(settings.rq_redis_url, "app")
    if on_cluster(data):
        raise RqOnCluster("the data is on a Redis Cluster and RQ does not support Redis Cluster: "
                          "set ECD_RQ_REDIS_URL to a plain Redis server for the job queue")
    return data


def job_data(job_connection: redis.Redis, settings: Settings | None = None) -> redis.Redis:
    """The data client of an RQ job: the job's own connection when RQ shares the data's Redis (as
    always), else REDIS_URL's (the job queue has a Redis of its own: ECD_RQ_REDIS_URL)."""
    settings = settings or Settings()
    if settings.rq_redis_url and settings.redis_url:
        return pooled(settings.redis_url, "app")
    return job_connection


def writes_refused(exc: BaseException) -> str | None:
    """Redis's reason when it refuses writes for now (memory full, failed snapshot, read-only), else None."""
    if isinstance(exc, (redis.exceptions.OutOfMemoryError, redis.exceptions.ReadOnlyError)):
        return str(exc)
    if isinstance(exc, redis.ResponseError):
        text = str(exc)
        # a refused command inside MULTI aborts the EXEC: "EXECABORT ... previous errors" carries no reason
        if text.startswith(_WRITE_REFUSALS) or (text.startswith("EXECABORT") and "OOM" in text):
            return text
    return None


def trouble(exc: BaseException) -> str | None:
    """Why Redis cannot serve us now, when waiting may cure it: down, timed out, loading, or refusing
    writes (`writes_refused`). None for any other error (refused credentials, a wrong type: a bug)."""
    if isinstance(exc, (redis.AuthenticationError, redis.exceptions.AuthorizationError)):
        return None
    if isinstance(exc, redis.BusyLoadingError):
        return f"Redis is loading its data: {exc}"
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return f"Redis is unavailable: {exc}"
    if isinstance(exc, _CLUSTER_TROUBLE) or (
            isinstance(exc, redis.exceptions.RedisClusterException) and "cannot be connected" in str(exc)):
        return f"Redis Cluster is failing over or resharding: {type(exc).__name__}: {exc}"
    refused = writes_refused(exc)
    return f"Redis refuses writes: {refused}" if refused else None


def as_unavailable(exc: BaseException):
    """`exc` as a retryable `command.errors.Unavailable` when Redis cannot serve us now (`trouble`), or
    `exc` itself when it already is a retryable `CommandError`; None for anything else. The
    long-running loops back off and resume on it (command/engine/consumer.py, command/ops/drills.py)."""
    from command.errors import CommandError, Unavailable

    if isinstance(exc, CommandError):
        return exc if exc.retryable else None
    why = trouble(exc)
    return Unavailable(why) if why is not None else None
