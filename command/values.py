"""The one cleaner for a numeric reading value that comes from outside (a feed payload, a scenario CSV).

``clean_number(raw) -> float`` returns a finite float, or raises `command.errors.InvalidInput`
(``field="value"``) whose ``message`` is the short reason a dead letter or quarantine record keeps.

Accepted: an ``int`` or ``float``, or a ``str`` holding a decimal number (optional sign, ASCII
digits, optional fraction and exponent, blanks around it: ``"4.36"``, ``" -1e3 "``, ``".5"``).

Rejected, with the reason:

- ``None``, ``""`` or blanks only: ``missing value``;
- ``True`` / ``False`` (never 1.0 / 0.0): ``non-numeric value True``;
- any other type or string (``"n/a"``, ``"true"``, ``"1_000"``, ``"0x10"``, ``"1,5"``, a list):
  ``non-numeric value 'n/a'``;
- NaN, ±infinity, or beyond the float range, as a number or a string (``"NaN"``, ``"-Infinity"``,
  ``"1e400"``): ``non-finite value 'inf'``.

There is no bound on magnitude: the project has none, and a plausible range depends on the kind
and the station. No-data sentinels (USGS ``noDataValue``, EA's -999999) belong to each source's
adapter, which checks them after this. Pure: no I/O, no state.
"""

from __future__ import annotations

import math

from command.errors import InvalidInput


def _reject(reason: str) -> InvalidInput:
    return InvalidInput(reason, field="value")


def clean_number(raw: object) -> float:
    """`raw` as a finite float, or InvalidInput with the reason (see the module docstring)."""
    if raw is None:
        raise _reject("missing value")
    if isinstance(raw, bool):
        raise _reject(f"non-numeric value {raw!r}")
    if isinstance(raw, int | float):
        try:
            value = float(raw)
        except OverflowError:  # an int beyond the float range
            raise _reject(f"non-finite value {raw!r}") from None
    elif isinstance(raw, str):
        text = raw.strip()
        if not text:
            raise _reject("missing value")
        try:
            value = float(text)
        except ValueError:
            raise _reject(f"non-numeric value {raw!r}") from None
        # float() also reads "1_000" and non-ASCII digits ("４２"): not numbers a service or a CSV means
        if "_" in text or not text.isascii():
            raise _reject(f"non-numeric value {raw!r}")
    else:
        raise _reject(f"non-numeric value {raw!r}")
    if not math.isfinite(value):
        raise _reject(f"non-finite value {raw!r}")
    return value


__all__ = ["clean_number"]
