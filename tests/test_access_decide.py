"""The pure authorization decision (command/trust/access.py): deny by default, roles, departments,
clearance, tokens, open; no server (docs/security.md, "Authorization")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from command.trust.access import (
    CLEARANCES,
    OPEN,
    SIGNED_IN,
    Caller,
    Policy,
    decide,
    department_scope,
    may_see,
)
from command.trust.auth import ROLES

DEPARTMENTS = ("fire_rescue", "water_authority", "police", "medical", "public_works", "meteorology",
               "emergency_management")
roles = st.sampled_from(ROLES)
role_sets = st.frozensets(roles, min_size=1)
clearances = st.sampled_from(CLEARANCES)


def person(role, department="fire_rescue", clearance="internal"):
    return Caller.of({"username": "u", "role": role, "department": department, "clearance": clearance})


def test_nothing_declared_refuses_everyone():
    assert decide(None, Caller.anonymous()).status == 403
    for role in ROLES:
        d = decide(None, person(role))
        assert not d and d.status == 403 and "no access policy" in d.reason


def test_open_lets_anyone_through_and_signed_in_needs_a_session():
    assert decide(OPEN, Caller.anonymous())
    assert decide(SIGNED_IN, Caller.anonymous()).status == 401
    assert all(decide(SIGNED_IN, person(role)) for role in ROLES)


def test_a_policy_must_name_known_roles_and_someone():
    with pytest.raises(ValueError, match="unknown role"):
        Policy.of(("operator", "duty-officer"))
    with pytest.raises(ValueError, match="allows nobody"):
        Policy()
    with pytest.raises(ValueError, match="unknown clearance"):
        Policy.of("operator", clearance="top-secret")


@given(allow=role_sets, role=roles)
def test_exactly_the_declared_roles_get_through(allow, role):
    d = decide(Policy(allow=allow), person(role))
    assert bool(d) == (role in allow)
    if not d:
        assert d.status == 403 and role in d.reason
    assert decide(Policy(allow=allow), Caller.anonymous()).status == 401  # not signed in comes first


@given(need=clearances, held=clearances, role=roles)
def test_clearance_is_ordered_public_internal_secret(need, held, role):
    d = decide(Policy(allow=frozenset(ROLES), clearance=need), person(role, clearance=held))
    assert bool(d) == (CLEARANCES.index(held) >= CLEARANCES.index(need))


def test_a_clearance_the_record_does_not_name_is_public():
    assert person("operator", clearance="").clearance == "public"
    assert person("operator", clearance="cosmic").clearance == "public"
    assert Caller.anonymous().clearance == "public"


def test_tokens_only_where_declared_and_with_the_clearance_of_their_scopes():
    reader = Caller.of({"username": "token:gis", "role": "token", "department": "", "scopes": "read_internal"})
    public = Caller.of({"username": "token:web", "role": "token", "department": "", "scopes": "read_public"})
    assert (reader.clearance, public.clearance) == ("internal", "public")
    assert decide(Policy.of(ROLES), reader).status == 403  # pages and callbacks never take a token
    assert decide(Policy.of(ROLES, tokens=True), reader)
    assert not decide(Policy.of(ROLES, tokens=True, clearance="internal"), public)


@given(caller_dept=st.sampled_from(DEPARTMENTS), item_dept=st.sampled_from(DEPARTMENTS), role=roles)
def test_a_department_user_sees_its_own_departments_items_only(caller_dept, item_dept, role):
    policy = Policy.of(ROLES, own_department=True)
    caller = person(role, caller_dept)
    seen = may_see(policy, caller, department=item_dept)
    if role == "department":
        assert seen == (caller_dept == item_dept)
        assert department_scope(policy, caller) == caller_dept
    else:  # the command centre and the others see every department
        assert seen
        assert department_scope(policy, caller) is None
    # a policy that does not scope by department leaves that to the role check
    assert may_see(Policy.of(ROLES), caller, department=item_dept)


def test_an_item_needs_the_clearance_of_its_classification():
    policy = Policy.of(ROLES)
    assert may_see(policy, person("operator", clearance="secret"), classification="secret")
    assert not may_see(policy, person("operator", clearance="internal"), classification="secret")
    assert not may_see(Policy.of("operator"), person("auditor", clearance="secret"), classification="public")
