"""A user's own settings (command/ops/preferences.py), on the real test Redis: kept by user name, each
value checked, a bad one refused with its field named and nothing stored."""

from __future__ import annotations

import pytest

from command.errors import InvalidInput
from command.keys import preferences as prefs_key
from command.ops import preferences
from command.ops.preferences import DEFAULT, Preferences


def test_defaults_until_the_user_changes_something(r):
    assert preferences.load(r, "operator") == DEFAULT == Preferences(sound=True, level="red", notify=False)
    assert not r.exists(prefs_key("operator"))


def test_saved_per_user_and_read_back(r):
    assert preferences.save(r, "operator", {"sound": False}) == Preferences(sound=False, level="red", notify=False)
    assert preferences.save(r, "operator", {"level": "orange", "notify": True}) == \
        Preferences(sound=False, level="orange", notify=True)
    assert preferences.load(r, "operator") == Preferences(sound=False, level="orange", notify=True)
    assert preferences.load(r, "planner") == DEFAULT  # another user's settings are their own
    assert r.hgetall(prefs_key("operator")) == {b"sound": b"0", b"level": b"orange", b"notify": b"1"}


@pytest.mark.parametrize("values, field", [
    ({"level": "purple"}, "level"),
    ({"level": ["red"]}, "level"),
    ({"level": None}, "level"),
    ({"sound": "yes"}, "sound"),
    ({"sound": 1}, "sound"),
    ({"notify": None}, "notify"),
    ({"volume": 11}, "volume"),
])
def test_a_bad_value_is_refused_and_nothing_is_stored(r, values, field):
    preferences.save(r, "operator", {"level": "yellow"})
    with pytest.raises(InvalidInput) as exc:
        preferences.save(r, "operator", {"sound": False, **values})
    assert field in exc.value.errors
    assert preferences.load(r, "operator") == Preferences(sound=True, level="yellow", notify=False)


def test_not_an_object_or_not_a_user_name(r):
    with pytest.raises(InvalidInput):
        preferences.parse(["sound"])  # type: ignore[arg-type]
    for name in ("", "a", "../x", "x" * 41, "op\nerator", None):
        with pytest.raises(InvalidInput):
            preferences.save(r, name, {"sound": False})  # type: ignore[arg-type]
    assert r.keys(prefs_key("*")) == []


def test_a_stored_value_that_no_longer_reads_gives_the_defaults(r):
    r.hset(prefs_key("operator"), mapping={"sound": "maybe", "level": "red"})
    assert preferences.load(r, "operator") == DEFAULT
