"""What a resource type is for planning, and the travel model's constants.

A type's profile comes from `resource_types:` in rules.yaml (`{pump: {speed_kmh: 40, setup: 30m}}`);
a type with no profile travels at `DEFAULT_SPEED_KMH` and needs no set-up time. A road's own
`speed_kmh` applies to every type; the type's speed is used only where roads give none (a road
drawn without a speed, or no road network at all).
"""

from __future__ import annotations

from dataclasses import dataclass

ACCESS_SPEED_KMH = 10.0  # off the road network: resource -> nearest road vertex -> target
DETOUR_FACTOR = 1.3  # with no road network: the straight line x 1.3, at the type's speed
DEFAULT_SPEED_KMH = 40.0  # a type with no profile, where roads give no speed
MAX_SNAP_M = 2_000.0  # a point farther than this from every road is off the network (straight line)


@dataclass(frozen=True, slots=True)
class TypeProfile:
    """A resource type's speed where roads give none (km/h) and its set-up time on scene (ms)."""

    speed_kmh: float = DEFAULT_SPEED_KMH
    setup_ms: int = 0


DEFAULT_PROFILE = TypeProfile()
