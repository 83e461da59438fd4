"""The replay clock: scenario time from wall time at a speed (1x, 10x, 60x ... or as fast as
Redis takes it), pausable. It paces a scenario's replay; the namespace clock the rest of the system
reads (`command.clock.namespace_now`) is what the replay feed publishes as it goes."""

from __future__ import annotations

import time
from collections.abc import Callable


class ReplayClock:
    """Scenario time from wall time at a speed; pausable. speed None means as fast as possible."""

    def __init__(self, start: int, speed: float | None, wall: Callable[[], float] = time.monotonic) -> None:
        self.start, self.speed, self._wall = start, speed, wall
        self._anchor_wall = wall()
        self._anchor_t = start
        self.paused = False

    def now(self) -> int | None:
        """Current scenario time; None at max speed (the caller publishes in chunks instead)."""
        if self.speed is None:
            return None
        if self.paused:
            return self._anchor_t
        return self._anchor_t + int((self._wall() - self._anchor_wall) * 1000 * self.speed)

    def pause(self) -> None:
        if not self.paused and self.speed is not None:
            self._anchor_t = self.now() or self._anchor_t
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self._anchor_wall = self._wall()
            self.paused = False

    def set_speed(self, speed: float | None) -> None:
        if self.speed is not None and not self.paused:
            self._anchor_t = self.now() or self._anchor_t
        self._anchor_wall = self._wall()
        self.speed = speed


def parse_speed(text: str) -> float | None:
    """'max' -> None; '60', '60x' -> 60.0."""
    t = str(text).strip().lower()
    if t in ("max", "maximum", ""):
        return None
    t = t.removesuffix("x")
    speed = float(t)
    if speed <= 0:
        raise ValueError("speed must be positive, or 'max'")
    return speed
