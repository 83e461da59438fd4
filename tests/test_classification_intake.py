"""Personal data comes in through one strict validator (command/ops/people.py): an incident's reporter
(form, intake, injects) and the people a task assisted. Hostile values are refused per field, and a
refusal never echoes the value."""

from __future__ import annotations

import pytest

from command.errors import InvalidInput
from command.models import Incident
from command.ops import people
from command.ops.incidents import FORM, INTAKE, validate_incident

NOW = 1_782_000_000_000
BASE = {"id": "CAD-1", "time": "2026-06-21T10:00:00+00:00", "category": "flooding", "lat": 30.0, "lon": 114.0}


@pytest.mark.parametrize(("raw", "stored"), [
    ({"name": "王小明", "phone": "13812348000"}, {"name": "王小明", "phone": "13812348000"}),
    ({"name": "Jane O'Neil-Smith"}, {"name": "Jane O'Neil-Smith", "phone": ""}),
    ({"phone": "+86 138-1234-8000"}, {"name": "", "phone": "+8613812348000"}),
    ({"phone": "12345"}, {"name": "", "phone": "12345"}),
    ({"name": "x" * 100, "phone": "+123456789012345"}, {"name": "x" * 100, "phone": "+123456789012345"}),
    ({"name": "", "phone": "999 999"}, {"name": "", "phone": "999999"}),
])
def test_good_contacts_are_taken(raw, stored):
    inc = validate_incident({**BASE, "reporter": raw}, INTAKE, now=NOW)
    assert inc.reporter.model_dump() == stored


@pytest.mark.parametrize(("raw", "field"), [
    ("王小明 13812348000", "reporter"),
    (["王小明"], "reporter"),
    ({"name": "a", "phone": "1", "email": "a@b"}, "reporter"),
    ({}, "reporter"),
    ({"name": "", "phone": ""}, "reporter"),
    ({"name": 7}, "reporter.name"),
    ({"name": " padded"}, "reporter.name"),
    ({"name": "x" * 101}, "reporter.name"),
    ({"name": "evil\u202ename"}, "reporter.name"),
    ({"name": "line\nbreak"}, "reporter.name"),
    ({"name": "zero\u200bwidth"}, "reporter.name"),
    ({"phone": "1234"}, "reporter.phone"),
    ({"phone": "1234567890123456"}, "reporter.phone"),
    ({"phone": "138-1234-800O"}, "reporter.phone"),
    ({"phone": "+86  138"}, "reporter.phone"),
    ({"phone": "138--1234"}, "reporter.phone"),
    ({"phone": 13812348000}, "reporter.phone"),
    ({"phone": "١٣٨١٢٣٤٨٠٠٠"}, "reporter.phone"),  # Arabic-Indic digits
    ({"phone": "13812348000\n"}, "reporter.phone"),
    ({"phone": "tel:13812348000"}, "reporter.phone"),
])
def test_hostile_contacts_are_refused_per_field_without_echo(raw, field):
    with pytest.raises(InvalidInput) as exc:
        validate_incident({**BASE, "reporter": raw}, INTAKE, now=NOW)
    assert field in exc.value.errors, exc.value.errors
    assert "13812348000" not in str(exc.value.errors)


def test_no_reporter_is_fine_everywhere():
    assert validate_incident(BASE, INTAKE, now=NOW).reporter is None
    assert validate_incident({**BASE, "reporter": None}, INTAKE, now=NOW).reporter is None
    form = {k: v for k, v in BASE.items() if k not in ("id", "time")} | {"severity": "red", "description": "d"}
    assert validate_incident({**form, "reporter": {"phone": "13812348000"}}, FORM, now=NOW).reporter.phone == "13812348000"


def test_a_stored_record_of_before_reads_its_old_reporter_string_as_none():
    old = {"id": "I1", "time": 1, "category": "flooding", "lat": 0, "lon": 0, "reporter": "water"}
    assert Incident.model_validate(old).reporter is None


def test_people_lists():
    ok, errors = people.people([{"name": "Li Si", "phone": "139 1234 5678"}, {"name": "王五"}])
    assert errors == {} and [p.model_dump() for p in ok] == [{"name": "Li Si", "phone": "13912345678"},
                                                              {"name": "王五", "phone": ""}]
    assert people.people(None) == ([], {})
    assert people.people("Li Si")[1] == {"people": "a list of people (name and/or phone)"}
    assert people.people([{"name": "a"}] * (people.MAX_PEOPLE + 1))[1] == {"people": "at most 200 people at once"}
    _, errors = people.people([{"name": "ok"}, {"phone": "x"}])
    assert set(errors) == {"people[1].phone"}


def test_a_task_takes_people_strictly(r):
    from command.keys import Keys
    from command.ops.dispatch import dispatch, update_task
    from command.scenarios.replay import run_replay

    from .conftest import SCENARIOS
    from .test_classification_readers import drain  # noqa: F401 - the same engine helper

    keys = Keys(run_replay(r, SCENARIOS / "rule_zone_incident").namespace)
    import orjson

    fp = r.zrange(keys.alerts_open, 0, 0)[0].decode()
    alert = orjson.loads(r.get(keys.alert(fp)))
    rec = orjson.loads(r.get(keys.recommendation(fp)))
    d = dispatch(r, keys, fingerprint=fp, level=alert["level"], resource_ids=[rec["items"][0]["resource_id"]],
                 operator="op", now=1)
    tid, dept = d.task_ids[0], d.departments[0]
    with pytest.raises(InvalidInput) as exc:
        update_task(r, keys, task_id=tid, department=dept, user="u", status="on_scene", now=2,
                    people=[{"name": "Li", "phone": "not a phone"}])
    assert exc.value.errors == {"people[0].phone": "a phone number: an optional + and 5 to 15 digits "
                                                   "(spaces or - between)"}
    t = update_task(r, keys, task_id=tid, department=dept, user="u", status="on_scene", now=2,
                    people=[{"name": "Li", "phone": "139 1234 5678"}])
    t = update_task(r, keys, task_id=tid, department=dept, user="u", status="completed", now=3,
                    people=[{"name": "Wang"}])
    assert [p.model_dump() for p in t.people] == [{"name": "Li", "phone": "13912345678"}, {"name": "Wang", "phone": ""}]
