"""Unit conversion to SI on ingest. Unknown units are an error the caller quarantines."""

from __future__ import annotations

# unit as written by a source -> (SI unit, factor). Keys are lower-case.
_TO_SI: dict[str, tuple[str, float]] = {
    "m": ("m", 1.0),
    "ft": ("m", 0.3048),
    "feet": ("m", 0.3048),
    "cm": ("m", 0.01),
    "mm": ("mm", 1.0),
    "in": ("mm", 25.4),
    "m/s": ("m/s", 1.0),
    "km/h": ("m/s", 1.0 / 3.6),
    "kmh": ("m/s", 1.0 / 3.6),
    "mph": ("m/s", 0.44704),
    "kn": ("m/s", 0.514444),
    "m3/s": ("m3/s", 1.0),
    "ft3/s": ("m3/s", 0.028316846592),
    "cfs": ("m3/s", 0.028316846592),
}

# The SI unit each reading kind must end in: a water level in mm/h is a unit error, not a value.
KIND_UNITS: dict[str, str] = {
    "water_level": "m",
    "rainfall": "mm",
    "wind_speed": "m/s",
    "discharge": "m3/s",
}


class UnitError(ValueError):
    """A unit that is unknown, or that does not fit the reading's kind."""


def to_si(value: float, unit: str) -> tuple[float, str]:
    try:
        si, factor = _TO_SI[unit.strip().lower()]
    except KeyError:
        raise UnitError(f"unknown unit {unit!r}") from None
    return value * factor, si


def factor_for(unit: str, kind: str | None = None) -> tuple[float, str]:
    """The factor to SI for `unit`, checked against `kind` when given."""
    try:
        si, factor = _TO_SI[unit.strip().lower()]
    except KeyError:
        raise UnitError(f"unknown unit {unit!r}") from None
    if kind is not None and kind in KIND_UNITS and KIND_UNITS[kind] != si:
        raise UnitError(f"unit {unit!r} does not measure {kind} (expected a unit of {KIND_UNITS[kind]})")
    return factor, si
