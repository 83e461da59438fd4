"""One throttle for every way in (the sign-in form, HTTP Basic, API tokens): password guessing is slowed
per user name AND per client address, with delays that grow, never a hard lock.

How it counts. Each subject (a user name, a client address) has a hash {n, last}: the failures so far
and when the last one was counted. A subject with `n` failures, `n` at or past its free allowance
(`NAME_FREE` = 5 for a name, `ADDRESS_FREE` = 20 for an address), waits 2^(n - free) seconds after
`last`, at most `MAX_DELAY_S` (15 minutes): after 5 wrong passwords for `operator` the 6th try waits
1 s, then 2, 4, 8 ... The counts are forgotten `FORGET_S` (a day) after the last failure, and a
successful sign-in forgets the name's (an admin can clear any: `python -m command users unlock NAME`).

Why it is safe under concurrency. `attempt()` is one Lua script: it checks every subject and, when
all may try, *charges* each a failure before the caller checks the password (so 100 parallel guesses
cannot all pass a check that none has yet failed); `succeeded()` gives the charge back. The check comes
before the expensive scrypt hash, so a throttled request costs one Redis call.

Why growing delays and not a lock. A lock anyone can trigger is a way to lock the duty officer out in
the middle of a flood. A delay keeps the guessing rate near zero (about 100 tries a day per name at the
cap) while a person who mistyped waits seconds. An address's allowance is larger than a name's since
a whole command centre may share one address; IPv6 addresses count per /64 (one customer's network).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from dataclasses import dataclass

import redis

from command.errors import RateLimited
from command.keys import Keys, address_failures, login_failures

NAME_FREE = 5
ADDRESS_FREE = 20
MAX_DELAY_S = 15 * 60
FORGET_S = 24 * 3600

# KEYS: the subjects' hashes. ARGV: now (ms), forget (ms), max delay (ms), then each subject's allowance.
# Returns 0 (charged: go ahead) or the milliseconds to wait (nothing changed).
_ATTEMPT = """
local now = tonumber(ARGV[1])
local forget = tonumber(ARGV[2])
local maxd = tonumber(ARGV[3])
local wait = 0
for i, key in ipairs(KEYS) do
  local st = redis.call('HMGET', key, 'n', 'last')
  local n = tonumber(st[1] or '0') or 0
  local last = tonumber(st[2] or '0') or 0
  local free = tonumber(ARGV[3 + i])
  if n >= free then
    local d = math.min(math.pow(2, n - free) * 1000, maxd)
    local w = last + d - now
    if w > wait then wait = w end
  end
end
if wait > 0 then return math.ceil(wait) end
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'n', 1)
  redis.call('HSET', key, 'last', now)
  redis.call('PEXPIRE', key, forget)
end
return 0
"""
# KEYS[1]: the name's hash (forgotten), KEYS[2..]: the others (their charge given back).
_SUCCEEDED = """
if KEYS[1] ~= '' then redis.call('DEL', KEYS[1]) end
for i = 2, #KEYS do
  local n = tonumber(redis.call('HGET', KEYS[i], 'n') or '0') or 0
  if n > 0 then redis.call('HINCRBY', KEYS[i], 'n', -1) end
end
return 1
"""


def address_of(remote: str | None) -> str:
    """The throttle's subject for a client address: the address, or its /64 for IPv6."""
    if not remote:
        return "unknown"
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return remote[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def delay_s(n: int, free: int) -> float:
    """How long a subject with `n` failures waits after its last one."""
    if n < free:
        return 0.0
    return float(min(2 ** min(n - free, 30), MAX_DELAY_S))


@dataclass(frozen=True)
class Attempt:
    """A charged attempt: hand it back to `succeeded()` when the credentials were right."""

    name_key: str | None
    address_key: str


class Throttled(Exception):
    """The caller must wait `retry_after` seconds (answer 429 with Retry-After)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins: retry after {retry_after} s")
        self.retry_after = retry_after


class Throttle:
    def __init__(self, r: redis.Redis, *, name_free: int = NAME_FREE, address_free: int = ADDRESS_FREE) -> None:
        self.r = r
        self.name_free = name_free
        self.address_free = address_free
        self._attempt = r.register_script(_ATTEMPT)
        self._succeeded = r.register_script(_SUCCEEDED)

    def attempt(self, name: str | None, remote: str | None, now_ms: int | None = None) -> Attempt:
        """Check and charge, atomically; raises `Throttled` when the name or the address must wait.
        `name` None: no user name is known (a bad API token), only the address counts."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        address_key = address_failures(address_of(remote))
        keys, free = [address_key], [self.address_free]
        name_key = login_failures(name) if name else None
        if name_key:
            keys.insert(0, name_key)
            free.insert(0, self.name_free)
        wait_ms = int(self._attempt(keys=keys, args=[now_ms, FORGET_S * 1000, MAX_DELAY_S * 1000, *free]))
        if wait_ms > 0:
            raise Throttled(max(1, math.ceil(wait_ms / 1000)))
        return Attempt(name_key, address_key)

    def succeeded(self, attempt: Attempt) -> None:
        """The credentials were right: forget the name's failures, give the address its charge back."""
        self._succeeded(keys=[attempt.name_key or "", attempt.address_key])

    def state(self, name: str | None = None, remote: str | None = None,
              now_ms: int | None = None) -> dict[str, dict[str, float]]:
        """{subject key: {failures, wait_s}} for a name and/or an address (for `users list` and tests)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        out = {}
        for key, free in ((login_failures(name), self.name_free) if name else (None, 0),
                          (address_failures(address_of(remote)), self.address_free) if remote else (None, 0)):
            if key is None:
                continue
            n, last = self.r.hmget(key, "n", "last")
            n_i, last_i = int(n or 0), int(last or 0)
            wait = max(0.0, last_i / 1000 + delay_s(n_i, free) - now_ms / 1000) if n_i >= free else 0.0
            out[key] = {"failures": n_i, "wait_s": round(wait, 3)}
        return out


def unlock(r: redis.Redis, name: str | None = None, address: str | None = None) -> int:
    """Forget the failures of a user name and/or a client address (admins: `users unlock`)."""
    keys = ([login_failures(name)] if name else []) + ([address_failures(address_of(address))] if address else [])
    return int(r.delete(*keys)) if keys else 0


# ---- back-pressure: token buckets per source, user and department ----------------------------------
# A bucket holds up to `burst` tokens and refills at `rate` tokens a second; each reading (a feed) or
# submission (a form, the intake) costs one. The decision is pure (`take`); `RateLimiter` is the Redis
# edge: it reads the buckets under WATCH, decides, and writes them back in one MULTI/EXEC, so two web
# workers never both spend the same token. A feed takes what it can (`partial`: the excess is
# quarantined); a person's submission is all or nothing over every bucket it is charged to (the user's
# and the department's), so one phone that bursts is refused while its colleagues are served.

@dataclass(frozen=True)
class Bucket:
    rate: float  # tokens added per second
    burst: float  # most tokens held (the largest burst let through at once)


@dataclass(frozen=True)
class Taken:
    granted: int  # how many of those asked for may go ahead
    level: float  # tokens left
    retry_after: float  # seconds until the rest could go ahead (0 when all were granted)


def take(level: float | None, at_ms: int | None, now_ms: int, bucket: Bucket, want: int, *,
         partial: bool = False) -> Taken:
    """Pure: spend `want` tokens of a bucket last seen holding `level` at `at_ms` (None: never used,
    full). `partial`: grant as many as there are; else all or none."""
    if level is None or at_ms is None:
        cur = bucket.burst
    else:
        cur = min(bucket.burst, level + max(0, now_ms - at_ms) / 1000 * bucket.rate)
    granted = min(want, int(cur + 1e-9)) if partial else (want if cur + 1e-9 >= want else 0)
    left = cur - granted
    short = want - granted
    if short <= 0:
        return Taken(granted, left, 0.0)
    need = short - left if partial else want - cur
    wait = max(need, 0.0) / bucket.rate if bucket.rate > 0 else float("inf")
    if not partial and want > bucket.burst:
        wait = float("inf")  # never fits
    return Taken(granted, left, wait)


class RateLimiter:
    """The Redis edge of `take`: buckets are hashes {level, at} that expire once full again."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r

    def charge(self, charges: list[tuple[str, Bucket]], want: int = 1, *, partial: bool = False,
               now_ms: int | None = None) -> Taken:
        """Spend `want` from every bucket in `charges` at once. All or nothing (`partial` False): every
        bucket must have `want`, else none is charged and `retry_after` is the longest wait. `partial`
        (one bucket): grant what there is. Returns the decision (for several buckets: the tightest)."""
        keys = [k for k, _b in charges]
        with self.r.pipeline() as pipe:
            for _ in range(50):
                now = int(time.time() * 1000) if now_ms is None else now_ms
                try:
                    pipe.watch(*keys)
                    states = [pipe.hmget(k, "level", "at") for k in keys]
                    taken = [take(float(lv) if lv is not None else None, int(at) if at is not None else None,
                                  now, b, want, partial=partial)
                             for (lv, at), (_k, b) in zip(states, charges, strict=True)]
                    granted = min(t.granted for t in taken)
                    pipe.multi()
                    if granted:
                        for (k, b), t in zip(charges, taken, strict=True):
                            # charge what was granted (all or nothing: every bucket, or none at all)
                            level = t.level + t.granted - granted
                            pipe.hset(k, mapping={"level": repr(level), "at": now})
                            pipe.pexpire(k, int(max(1.0, (b.burst - level) / b.rate if b.rate > 0 else 86_400) * 1000)
                                         + 1000)
                    pipe.execute()
                except redis.WatchError:
                    continue
                worst = max(taken, key=lambda t: t.retry_after)
                return Taken(granted, min(t.level for t in taken), worst.retry_after if granted < want else 0.0)
        raise RateLimited("too busy to decide: try again", retry_after=1.0, key="err.rate_limited", params={"s": 1})


def submit_buckets() -> tuple[Bucket, Bucket]:
    """(per user, per department) buckets for form and intake submissions, from the settings."""
    return _submit_buckets()


@functools.cache
def _submit_buckets() -> tuple[Bucket, Bucket]:
    from command.config import Settings

    s = Settings()
    return (Bucket(s.submit_user_per_minute / 60, s.submit_user_burst),
            Bucket(s.submit_department_per_minute / 60, s.submit_department_burst))


def check_submission(r: redis.Redis, keys: Keys, username: str, department: str, what: str = "submissions",
                     now_ms: int | None = None) -> None:
    """Charge one form or intake submission to its user and its department; RateLimited (429) when
    either has spent its allowance. Others are not affected: each has buckets of its own."""
    user_b, dept_b = submit_buckets()
    got = RateLimiter(r).charge([(keys.rate_bucket("user", username), user_b),
                                 (keys.rate_bucket("department", department), dept_b)], now_ms=now_ms)
    if not got.granted:
        wait = max(1, math.ceil(min(got.retry_after, 3600)))
        raise RateLimited(f"too many {what} from {username} ({department}) in a short time: "
                          f"try again in {wait} s", retry_after=wait, key="err.rate_limited", params={"s": wait})
