"""Every Redis key and stream name, built in one place.

Layout (``ecd`` is the product prefix, ``ns`` the namespace: ``live`` or one per drill/replay):

- shard keys carry ``{ns:sN}`` as a Redis Cluster hash tag, so a shard's input stream, the rule
  state that resumes it, its lease and its outputs outbox always live in one slot and the engine
  commits them in one transaction: ``ecd:{ns:s0}:readings``, ``ecd:{ns:s0}:state``;
- everything else is ``ecd:{ns}:<name>``: the namespace is the hash tag, so the namespace-wide keys
  (alerts, recommendations, dispatch, tasks, audit) share one slot and their transactions stay valid
  on a Redis Cluster (docs/architecture.md, Redis Cluster). On one server a tag is just part of a name;
- a few keys are global (``GLOBAL_KEYS``): their names are reserved, so no namespace reaches them.

A namespace never shares a key with another, nor with a global key, so a drill cannot touch live
data and deleting a namespace deletes nothing else. The RQ queue name and the CAP identifier stem
are here too.
"""

from __future__ import annotations

import re
import zlib

from command.errors import InvalidInput

PREFIX = "ecd"
ENGINE_GROUP = "engine"  # the engine's consumer group on every shard stream
RQ_QUEUE = PREFIX  # the RQ queue of background jobs (RQ keeps its own `rq:*` keys for it)
# backtests have a queue and a worker of their own: one takes up to 15 min, and no acknowledgement
# check may wait behind it (command/ops/jobs.py)
RQ_BACKTEST_QUEUE = f"{PREFIX}-backtests"
CAP_ID_PREFIX = PREFIX  # CAP message identifiers are `ecd.<ns>.<fp>...` (docs/cap.md)
LIVE = "live"
_NS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # always fullmatch: `$` lets a trailing newline in

# Global keys (not per namespace): the drills that exist, the commands the exercise page sends them,
# the sign-in throttle, and the namespaces that have an audit trail.
DRILLS = f"{PREFIX}:drills"
DRILL_COMMANDS = f"{PREFIX}:drills:commands"
DRILL_CURSOR = f"{PREFIX}:drills:cursor"  # the last command the drill runner handled
# The sign-in throttle's keys share the hash tag `{throttle}`: its Lua steps read a user's and an
# address's counts together, which a Redis Cluster runs only within one slot (command/trust/throttle.py).
LOGIN_FAILURES = f"{PREFIX}:auth:{{throttle}}:failures"  # + `:<user>`, see login_failures()
AUDIT_NAMESPACES = f"{PREFIX}:audit:namespaces"  # set: every namespace ever audited (the anchor loop's list)
ACK_TIMER_NAMESPACES = f"{PREFIX}:timers:namespaces"  # set: namespaces with acknowledgement timers pending
HEALTH_PROBE = f"{PREFIX}:health"  # string, expires in seconds: /health's write check (command/runtime/health.py)
OPEN_DATA_RATE = f"{PREFIX}:open-data:rate"  # + `:<client address>:<minute>`, see open_data_rate()
PREFERENCES = f"{PREFIX}:prefs"  # + `:<user name>`, see preferences()

# Every global key, or the stem of a family of them. A namespace may not be named like the segment
# after the prefix of any of them: `ecd:<ns>:*` (a namespace's keys, and the pattern that deletes
# them) could otherwise reach a global key (a namespace `drills` would delete the drill runner's
# command stream). A new global key added here reserves its name by itself.
GLOBAL_KEYS = (DRILLS, DRILL_COMMANDS, DRILL_CURSOR, LOGIN_FAILURES, AUDIT_NAMESPACES, ACK_TIMER_NAMESPACES,
               HEALTH_PROBE, OPEN_DATA_RATE, PREFERENCES)
RESERVED_NAMESPACES = frozenset(k.split(":")[1] for k in GLOBAL_KEYS)


def open_data_rate(address: str, minute: int) -> str:
    """String counter (expires): requests a client address made to /public/ in one minute (layouts/public.py)."""
    return f"{OPEN_DATA_RATE}:{address.lower()[:64]}:{minute}"


def preferences(username: str) -> str:
    """Hash: one user's own page settings (the alert sound, its level, desktop notifications), kept on the
    server so they follow the user from browser to browser (command/ops/preferences.py)."""
    return f"{PREFERENCES}:{username}"


def login_failures(username: str) -> str:
    """Hash {n, last}: a user name's recent failed sign-ins (expires), to slow password guessing
    (command/trust/throttle.py)."""
    return f"{LOGIN_FAILURES}:{username.lower()[:64]}"


# The sign-in's other keys. All live under `ecd:auth:`, whose segment LOGIN_FAILURES already reserves,
# so no namespace reaches them (tests/test_keys.py checks it); command/trust/ explains each.
ADDRESS_FAILURES = f"{PREFIX}:auth:{{throttle}}:address-failures"  # + `:<client address>`, see address_failures()
# A session and its user's set are written in one transaction: one hash tag, `{sessions}`.
SESSIONS = f"{PREFIX}:auth:{{sessions}}:session"  # + `:<sha256 of the session id>`, see session()
USER_SESSIONS = f"{PREFIX}:auth:{{sessions}}:user-sessions"  # + `:<user name>`, see user_sessions()
TOTP_USED = f"{PREFIX}:auth:totp-used"  # + `:<user name>`, see totp_used()


def address_failures(address: str) -> str:
    """Hash {n, last}: a client address's recent failed sign-ins, whatever the user name."""
    return f"{ADDRESS_FAILURES}:{address.lower()[:64]}"


def session(sid_hash: str) -> str:
    """String (JSON, expires when idle): one signed-in session, named by the SHA-256 of its cookie's id."""
    return f"{SESSIONS}:{sid_hash}"


def user_sessions(username: str) -> str:
    """Set: the session hashes of one user (to end them all at once)."""
    return f"{USER_SESSIONS}:{username}"


def totp_used(username: str) -> str:
    """String: the newest TOTP time step a user has signed in with (a code is never taken twice)."""
    return f"{TOTP_USED}:{username}"


def sync_probe(key: str) -> str:
    """String (expires in a minute), in the same hash slot as `key` (a shard's or a namespace's): on a
    Redis Cluster the engine writes it right before WAIT, to learn that a replica holds its writes
    (command/engine/slots.py `replicated`)."""
    tag = key[key.index("{"):key.index("}") + 1]
    return f"{PREFIX}:{tag}:sync-probe"


def shard_of(subject_id: str, shards: int) -> int:
    """The shard of a station or incident: stable across processes and machines (crc32, not hash())."""
    if shards == 1:
        return 0
    return zlib.crc32(subject_id.encode()) % shards


class Keys:
    """Key builder for one namespace."""

    __slots__ = ("ns", "_p")

    def __init__(self, namespace: str = LIVE) -> None:
        if not _NS_RE.fullmatch(namespace):
            raise InvalidInput(f"invalid namespace {namespace!r}: letters, digits, '_', '-', '.' only",
                               field="namespace")
        if namespace in RESERVED_NAMESPACES:
            raise InvalidInput(f"invalid namespace {namespace!r}: reserved for a global key "
                               f"(not one of {', '.join(sorted(RESERVED_NAMESPACES))})", field="namespace")
        self.ns = namespace
        self._p = f"{PREFIX}:{{{namespace}}}"  # the namespace as hash tag: one cluster slot

    # --- sharded input: readings, incidents and clock ticks -------------------------------------
    def shard_stream(self, shard: int) -> str:
        return f"{PREFIX}:{{{self.ns}:s{shard}}}:readings"

    def shard_state(self, shard: int) -> str:
        """Hash: rule-state field per station/incident, plus the shard's clock fields."""
        return f"{PREFIX}:{{{self.ns}:s{shard}}}:state"

    def shard_lease(self, shard: int) -> str:
        return f"{PREFIX}:{{{self.ns}:s{shard}}}:lease"

    def shard_outputs(self, shard: int) -> str:
        """Stream (on a Redis Cluster): one entry per engine batch, the alert events, alert copies,
        recommendations and road closures it produced, committed with the batch's rule state and XACK
        in the shard's slot, then applied to the namespace's keys (command/engine/slots.py)."""
        return f"{PREFIX}:{{{self.ns}:s{shard}}}:outputs"

    def shard_added(self, shard: int) -> str:
        """String counter: input entries ever added to the shard's stream (the stream is trimmed once
        every consumer group acknowledged, command/streams.py), so counts survive the trimming."""
        return f"{PREFIX}:{{{self.ns}:s{shard}}}:added"

    # --- namespace metadata -----------------------------------------------------------------------
    @property
    def meta(self) -> str:
        """Hash: shards, scenario name, start, timezone, mode (live/exercise)."""
        return f"{self._p}:meta"

    @property
    def clock(self) -> str:
        """String: the namespace's current clock, epoch ms (scenario time in a drill)."""
        return f"{self._p}:clock"

    @property
    def stations(self) -> str:
        return f"{self._p}:stations"

    @property
    def zones(self) -> str:
        return f"{self._p}:zones"

    @property
    def resources(self) -> str:
        return f"{self._p}:resources"

    @property
    def basemap(self) -> str:
        """String: GeoJSON of the scenario's base layers (rivers) for a map with no tile server."""
        return f"{self._p}:basemap"

    @property
    def rules(self) -> str:
        return f"{self._p}:rules"

    @property
    def roads(self) -> str:
        """String: the scenario's road network (GeoJSON, validated) for travel times (docs/dispatch.md)."""
        return f"{self._p}:roads"

    @property
    def road_closures(self) -> str:
        """Hash: incident id -> JSON closure record (which roads it closes, from when to when), kept by
        the engine from the incidents it reads (command/planning/closures.py)."""
        return f"{self._p}:road-closures"

    # --- outputs ----------------------------------------------------------------------------------
    @property
    def outputs_applied(self) -> str:
        """Hash: shard index -> id of the newest `shard_outputs` entry applied to the namespace's keys
        (written in the same transaction as what it applied, so each entry is applied once)."""
        return f"{self._p}:outputs-applied"

    @property
    def alerts_stream(self) -> str:
        return f"{self._p}:alerts"

    def alert(self, fingerprint: str) -> str:
        return f"{self._p}:alert:{fingerprint}"

    @property
    def alerts_open(self) -> str:
        """Sorted set of open alert fingerprints, scored by opening time."""
        return f"{self._p}:alerts:open"

    @property
    def alerts_index(self) -> str:
        """Sorted set of every alert fingerprint ever opened, scored by opening time."""
        return f"{self._p}:alerts:index"

    @property
    def recommendations_stream(self) -> str:
        return f"{self._p}:recommendations"

    def recommendation(self, fingerprint: str) -> str:
        """String: the latest recommendation (JSON) for an alert."""
        return f"{self._p}:rec:{fingerprint}"

    @property
    def deadletter(self) -> str:
        """Stream of rejected input: source, raw record, reason."""
        return f"{self._p}:deadletter"

    @property
    def events(self) -> str:
        """Stream of applied injects and other scenario events (for the after-action timeline)."""
        return f"{self._p}:events"

    # --- current state for the dashboard (written by the recorder and the feeds) -----------------
    @property
    def latest(self) -> str:
        """Hash: station id -> JSON {kind: [t_ms, value_si]} of its newest readings."""
        return f"{self._p}:latest"

    @property
    def latest_seq(self) -> str:
        """String counter, bumped once per recorder batch; `latest_changed` scores use it."""
        return f"{self._p}:latest:seq"

    @property
    def latest_changed(self) -> str:
        """Sorted set: station id scored by the `latest_seq` of its last change (deltas for the map)."""
        return f"{self._p}:latest:changed"

    def series(self, station_id: str) -> str:
        """Stream of a station's recent readings (capped), for its trend plot."""
        return f"{self._p}:series:{station_id}"

    @property
    def incidents(self) -> str:
        """Hash: incident id -> Incident JSON (latest version)."""
        return f"{self._p}:incidents"

    # --- external warnings (NWS, CAP feeds) -------------------------------------------------------
    @property
    def warnings(self) -> str:
        """Hash: warning id -> JSON of the imported warning (area, severity, onset, expires)."""
        return f"{self._p}:warnings"

    @property
    def warnings_stream(self) -> str:
        return f"{self._p}:warnings:events"

    # --- live feeds -------------------------------------------------------------------------------
    @property
    def feeds(self) -> str:
        """Set of the feed source names that have reported health."""
        return f"{self._p}:feeds"

    def feed_health(self, source: str) -> str:
        """Hash: last_poll, last_success, last_error, consecutive_failures, readings, rejected, newest."""
        return f"{self._p}:feed:{source}:health"

    def feed_hwm(self, source: str) -> str:
        """Hash: series key (station|kind) -> newest time taken (ms): a restart neither loses nor repeats."""
        return f"{self._p}:feed:{source}:hwm"

    def feed_http(self, source: str) -> str:
        """Hash: url -> JSON {etag, last_modified} for conditional requests."""
        return f"{self._p}:feed:{source}:http"

    def feed_stations(self, source: str) -> str:
        """Set: the station ids the source's last good payload delivered (to notice one that disappears)."""
        return f"{self._p}:feed:{source}:stations"

    # --- forecasts (kept apart from observations) ---------------------------------------------------
    @property
    def forecasts(self) -> str:
        """Hash: station/point id -> JSON {kind: {issued, series: [[t_ms, value_si], ...]}}, the newest run."""
        return f"{self._p}:forecasts"

    def rate_bucket(self, kind: str, subject: str) -> str:
        """Hash {level, at} (expires once full): a token bucket limiting one subject's rate, `kind`
        feed (readings of a source), user or department (form and intake submissions)
        (command/trust/throttle.py RateLimiter)."""
        return f"{self._p}:rate:{kind}:{subject[:64]}"

    # --- dispatch, department tasks, audit ---------------------------------------------------------
    @property
    def dispatches_stream(self) -> str:
        return f"{self._p}:dispatches"

    def dispatch(self, dispatch_id: str) -> str:
        return f"{self._p}:dispatch:{dispatch_id}"

    @property
    def dispatches_index(self) -> str:
        """Sorted set of dispatch ids by creation time."""
        return f"{self._p}:dispatches:index"

    def dispatch_claim(self, fingerprint: str, level: str) -> str:
        """String: who dispatched this alert's recommendation at this level (SET NX: one winner)."""
        return f"{self._p}:dispatch-claim:{fingerprint}:{level}"

    def task(self, task_id: str) -> str:
        return f"{self._p}:task:{task_id}"

    @property
    def ack_timers(self) -> str:
        """Sorted set: task ids by acknowledgement deadline (namespace clock, ms), written with the
        dispatch; the worker's sweep flags those past due (command/ops/jobs.py)."""
        return f"{self._p}:ack-timers"

    @property
    def verify_watch(self) -> str:
        """Hash: task id -> JSON watch of a completed task on a station's alert, written with the
        completion; the engine's commit reopens or verifies the task and removes it (command/ops/verify.py)."""
        return f"{self._p}:verify-watch"

    def department_tasks(self, department: str) -> str:
        """Sorted set of a department's task ids by creation time."""
        return f"{self._p}:tasks:{department}"

    @property
    def status_stream(self) -> str:
        """Stream of department status updates on tasks."""
        return f"{self._p}:status"

    def alert_notes(self, fingerprint: str) -> str:
        """Hash: operator state of an alert: acknowledged_by/at, comment, escalated, resolution note."""
        return f"{self._p}:alert-notes:{fingerprint}"

    @property
    def audit(self) -> str:
        """Append-only, keyed hash-chained stream of every command: who, what, when (command/trust/audit.py)."""
        return f"{self._p}:audit"

    @property
    def audit_head(self) -> str:
        """String: the hash of the newest audit entry (the chain's head)."""
        return f"{self._p}:audit:head"

    def read_audited(self, digest: str) -> str:
        """String (expires): a view of secret fields already audited for this viewer and these records
        (command/trust/classification.py `Redactor.audit`: once per view, not at every redraw)."""
        return f"{self._p}:read-audited:{digest}"

    @property
    def replay_control(self) -> str:
        """Hash: a drill's replay state: speed, paused, scenario time (the exercise page drives it)."""
        return f"{self._p}:replay"

    # --- engines sharing the namespace's shards (command/engine/balance.py) -------------------------
    @property
    def engines(self) -> str:
        """Set: the consumer names of engines that announced themselves on this namespace (an index;
        an engine is alive while its `engine_heartbeat` key exists)."""
        return f"{self._p}:engines"

    def engine_heartbeat(self, consumer: str) -> str:
        """String (expires after the lease time): an engine's heartbeat, JSON {host, pid, max_shards};
        renewed with its leases, deleted on a clean stop."""
        return f"{self._p}:engine:{consumer}"

    # --- identifiers outside Redis --------------------------------------------------------------
    @property
    def cap_prefix(self) -> str:
        """The stem of this namespace's CAP message identifiers: `<stem>.<fp>`, `.u<n>`, `.end`."""
        return f"{CAP_ID_PREFIX}.{self.ns}"

    def pattern(self) -> list[str]:
        """Glob patterns matching every key of this namespace (for cleanup)."""
        return [f"{self._p}:*", f"{PREFIX}:{{{self.ns}:s*}}:*"]
