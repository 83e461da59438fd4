"""Personal contact details as they come in: an incident's reporter, the people a task assisted.

One strict validator for both (the incident intake, the department form, drill injects, task status
reports): an object with only ``name`` and ``phone``, at least one given.

- ``name``: 1-100 characters of text, no control or invisible characters (bidirectional overrides),
  no leading or trailing spaces;
- ``phone``: an optional ``+`` and 5-15 digits (E.164's longest), which may be grouped by single
  spaces or hyphens; stored as the digits (and the ``+``) only, so every reader masks it alike.

These are graded secret (sample_data/classification.yaml): they are kept in the incident's record and
the task, never on the engine's input stream, in the audit trail or in an error message.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from command.models import Person

MAX_NAME = 100
MAX_PEOPLE = 200  # on one task
PERSON_FIELDS = ("name", "phone")
_PHONE_RE = re.compile(r"\+?[0-9](?:[ -]?[0-9]){4,14}")
# bidirectional overrides and isolates ("Trojan source" text), line and paragraph separators
_INVISIBLE = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029\u200b\ufeff")


def _name_problem(v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be text"
    if not v:
        return "must not be empty"
    if len(v) > MAX_NAME:
        return f"at most {MAX_NAME} characters"
    if any(unicodedata.category(ch) in ("Cc", "Cs", "Cf") or ch in _INVISIBLE for ch in v):
        return "contains a control character or an invalid character"
    if v != v.strip():
        return "no leading or trailing spaces"
    return None


def _phone(v: Any) -> str | None:
    """The phone's digits (and a leading +), or None when it is not a phone number."""
    if not isinstance(v, str) or len(v) > 32 or not _PHONE_RE.fullmatch(v):
        return None
    return re.sub(r"[ -]", "", v)


def person(raw: Any, field: str) -> tuple[Person | None, dict[str, str]]:
    """(the person, {}) or (None, {field path: message}). `raw` None is no person: (None, {})."""
    if raw is None:
        return None, {}
    if not isinstance(raw, Mapping):
        return None, {field: "an object with name and/or phone"}
    errors: dict[str, str] = {}
    for k in raw:
        if k not in PERSON_FIELDS:
            errors[field] = "only name and phone"
    name, phone = raw.get("name"), raw.get("phone")
    name = None if name == "" else name
    phone = None if phone == "" else phone
    if name is None and phone is None:
        errors.setdefault(field, "give a name or a phone number")
        return None, errors
    if name is not None and (problem := _name_problem(name)):
        errors[f"{field}.name"] = problem
    digits = None
    if phone is not None:
        digits = _phone(phone)
        if digits is None:
            errors[f"{field}.phone"] = "a phone number: an optional + and 5 to 15 digits (spaces or - between)"
    if errors:
        return None, errors
    return Person(name=name or "", phone=digits or ""), {}


def people(raw: Any, field: str = "people") -> tuple[list[Person], dict[str, str]]:
    """A list of people (each as `person`), at most MAX_PEOPLE."""
    if raw is None:
        return [], {}
    if not isinstance(raw, list):
        return [], {field: "a list of people (name and/or phone)"}
    if len(raw) > MAX_PEOPLE:
        return [], {field: f"at most {MAX_PEOPLE} people at once"}
    out: list[Person] = []
    errors: dict[str, str] = {}
    for i, item in enumerate(raw):
        p, e = person(item, f"{field}[{i}]")
        errors.update(e)
        if p is not None:
            out.append(p)
    return (out, {}) if not errors else ([], errors)
