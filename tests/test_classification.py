"""Data classification: the one decision (pure, a table of cases), the file a data officer reads, the
masks, who a viewer is, and that no other module masks or grades (docs/security.md, "Data classification")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from command.trust import classification as c
from command.trust.auth import CLEARANCES, load_departments, load_users
from command.trust.classification import (
    PUBLIC,
    ClassificationError,
    Redactor,
    Viewer,
    decide,
    load_policy,
    viewer_of,
)

from .conftest import ROOT

SAMPLE = ROOT / "sample_data" / "classification.yaml"


@pytest.fixture(scope="module")
def pol():
    return load_policy(SAMPLE)


# ---- the one decision -------------------------------------------------------------------------------------
CASES = [
    # clearance, dataset, field, action
    ("public", "readings", None, "keep"),
    ("public", "alerts", None, "keep"),
    ("public", "warnings", None, "keep"),
    ("public", "alerts", "message", "drop"),  # may quote an incident's description: internal
    ("internal", "alerts", "message", "keep"),
    ("public", "incidents", None, "drop"),
    ("public", "incidents", "reporter.phone", "drop"),  # not cleared for the dataset: no mask, left out
    ("public", "tasks", None, "drop"),
    ("public", "dispatches", None, "drop"),
    ("public", "resources", None, "drop"),
    ("public", "alert_notes", None, "drop"),
    ("internal", "incidents", None, "keep"),
    ("internal", "incidents", "description", "keep"),
    ("internal", "incidents", "reporter.name", "mask"),
    ("internal", "incidents", "reporter.phone", "mask"),
    ("internal", "tasks", "people[].name", "mask"),
    ("internal", "tasks", "people[].phone", "mask"),
    ("internal", "tasks", "history[].note", "keep"),
    ("internal", "events", "data.reporter.phone", "mask"),
    ("internal", "resources", None, "keep"),
    ("secret", "incidents", "reporter.name", "keep"),
    ("secret", "incidents", "reporter.phone", "keep"),
    ("secret", "tasks", "people[].phone", "keep"),
    ("secret", "alerts", "message", "keep"),
    ("internal", "incidents", "not_graded", "keep"),  # an ungraded field is its dataset's level
    ("public", "readings", "value", "keep"),
    ("", "readings", None, "keep"),  # an unknown clearance is public
    ("top-secret", "incidents", None, "drop"),
    ("root", "incidents", "reporter.phone", "drop"),
]


@pytest.mark.parametrize(("clearance", "dataset", "field", "action"), CASES)
def test_the_one_decision(pol, clearance, dataset, field, action):
    assert decide(clearance, dataset, field, pol) == action


def test_a_field_is_never_below_its_dataset(tmp_path, pol):
    doc = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    doc["datasets"]["tasks"]["fields"]["status"] = "public"  # graded below its internal dataset
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    assert decide("public", "tasks", "status", load_policy(path)) == "drop"


def test_an_unknown_dataset_is_an_error(pol):
    with pytest.raises(ClassificationError, match="not in the classification file"):
        decide("secret", "users", None, pol)


@pytest.mark.parametrize(("kind", "value", "shown"), [
    ("phone", "13812348000", "138****8000"),
    ("phone", "+8613812348000", "+86****8000"),
    ("phone", "12345", "****"),
    ("phone", "", ""),
    ("name", "王小明", "王*"),
    ("name", "Jane Doe", "J*"),
    ("name", "", ""),
    ("name", None, None),
])
def test_masks(kind, value, shown):
    assert c._mask(kind, value) == shown


# ---- the file a data officer reads --------------------------------------------------------------------------
def test_every_dataset_and_sensitive_field_is_graded_in_one_file_with_en_and_zh_titles(pol):
    assert tuple(pol.levels) == CLEARANCES == ("public", "internal", "secret")
    assert (pol.levels["public"].zh, pol.levels["internal"].zh, pol.levels["secret"].zh) == ("公开", "内部", "秘密")
    assert set(c.REQUIRED_DATASETS) <= set(pol.datasets)
    departments = load_departments()
    for d in pol.datasets.values():
        assert d.title.en and d.title.zh and d.source.en and d.source.zh and d.format, d.id
        assert d.owner in departments, d.id
    # the starting grades the brief asked for
    for public in ("readings", "stations", "alerts", "warnings"):
        assert pol.datasets[public].classification == "public"
    for internal in ("tasks", "dispatches", "resources", "alert_notes", "incidents"):
        assert pol.datasets[internal].classification == "internal"
    for ds, path, mask in (("incidents", "reporter.name", "name"), ("incidents", "reporter.phone", "phone"),
                           ("tasks", "people[].name", "name"), ("tasks", "people[].phone", "phone")):
        rule = pol.datasets[ds].fields[path]
        assert (rule.classification, rule.mask) == ("secret", mask)
    assert pol.audited("secret") and not pol.audited("internal")
    assert pol.datasets["readings"].frequency_ms == 15 * 60_000 and pol.datasets["alerts"].frequency_ms is None


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["datasets"].pop("tasks"), "datasets not graded: tasks"),
    (lambda d: d["datasets"]["tasks"].update(classification="confidential"), "classification"),
    (lambda d: d["datasets"]["tasks"]["fields"].update({"people[].phone": {"classification": "secret",
                                                                            "mask": "stars"}}), "mask"),
    (lambda d: d["datasets"]["tasks"]["title"].update(zh=""), "must not be empty"),
    (lambda d: d["datasets"]["readings"].update(frequency="often"), "a duration"),
    (lambda d: d["datasets"]["tasks"]["fields"].update({"People!": "secret"}), "field"),
    (lambda d: d.update(levels={"public": d["levels"]["public"]}), "levels must be"),
    (lambda d: d["datasets"]["tasks"].update(colour="red"), "Extra inputs"),
])
def test_a_bad_file_is_refused_with_the_reason(tmp_path, change, message):
    doc = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    change(doc)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    with pytest.raises(ClassificationError, match=message):
        load_policy(path)


def test_the_file_is_read_again_when_it_changes_and_a_broken_edit_keeps_the_last_good_one(tmp_path):
    path = tmp_path / "classification.yaml"
    path.write_text(SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    assert decide("public", "resources", None, c.policy(path)) == "drop"
    path.write_text(SAMPLE.read_text(encoding="utf-8").replace(
        "    frequency: none\n    classification: internal\n\n  recommendations:",
        "    frequency: none\n    classification: public\n\n  recommendations:"), encoding="utf-8")
    assert decide("public", "resources", None, c.policy(path)) == "keep"
    path.write_text("levels: [", encoding="utf-8")
    assert decide("public", "resources", None, c.policy(path)) == "keep"  # the last good one


def test_the_settings_name_the_file():
    from command.config import Settings

    assert Settings().classification_file == SAMPLE
    assert c.policy_file() == SAMPLE


# ---- who is looking ----------------------------------------------------------------------------------------
def test_users_have_a_clearance_operator_and_police_secret_others_internal():
    users = load_users(ROOT / "sample_data" / "users.yaml")
    assert {u.username: u.clearance for u in users.values()} == {
        "operator": "secret", "police": "secret", "planner": "internal", "water": "internal", "fire": "internal",
        "medical": "internal", "works": "internal", "meteo": "internal", "admin": "internal", "auditor": "internal"}
    assert users["water"].public()["clearance"] == "internal"


def test_viewer_of_a_user_a_token_and_nobody():
    assert viewer_of(None) == PUBLIC
    assert viewer_of({"username": "op", "role": "operator", "department": "em", "clearance": "secret"}) == \
        Viewer("op", "secret", "em")
    assert viewer_of({"username": "x", "role": "department", "department": "fire"}).clearance == "public"
    assert viewer_of({"username": "x", "role": "operator", "clearance": "top"}).clearance == "public"
    token = {"username": "token:gis", "role": "token", "department": "em"}
    assert viewer_of({**token, "scopes": "read_public"}).clearance == "public"
    assert viewer_of({**token, "scopes": "read_internal submit_incidents"}).clearance == "internal"
    assert viewer_of({**token, "scopes": "submit_incidents", "clearance": "secret"}).clearance == "public"


# ---- applying it -------------------------------------------------------------------------------------------
TASK = {"id": "t1", "department": "fire_rescue", "history": [{"status": "on_scene", "note": "at the school"}],
        "people": [{"name": "王小明", "phone": "13812348000"}, {"name": "Jane Doe", "phone": ""}]}


def test_a_redactor_masks_drops_and_notes_what_it_showed(pol):
    red = Redactor(Viewer("water", "internal"), pol)
    assert red.record("tasks", TASK, "t1") == {**TASK, "people": [{"name": "王*", "phone": "138****8000"},
                                                                 {"name": "J*", "phone": ""}]}
    assert TASK["people"][0]["name"] == "王小明"  # the record itself is untouched
    assert not red.revealed
    assert Redactor(PUBLIC, pol).record("tasks", TASK, "t1") is None
    secret = Redactor(Viewer("op", "secret"), pol)
    assert secret.record("tasks", TASK, "t1") == TASK
    assert secret.revealed == {"tasks.people[].name": {"t1"}, "tasks.people[].phone": {"t1"}}
    public_alert = Redactor(PUBLIC, pol).record("alerts", {"fingerprint": "f", "message": "flooding: 138...",
                                                           "level": "red"}, "f")
    assert public_alert == {"fingerprint": "f", "level": "red"}


# ---- one function decides: nothing else grades or masks -------------------------------------------------------
MASKING = re.compile(r"""\*\*\*\*|\+\s*["']\*["']|["']\*["']\s*\*|\bmask_(phone|name)\b|\bdecide\(""")


def test_no_other_module_masks_or_decides():
    """Readers hand records to the Redactor; only command/trust/classification.py grades and masks."""
    own = Path(c.__file__).resolve()
    offenders = []
    for pkg in ("command", "layouts", "feeds"):
        for path in (ROOT / pkg).rglob("*.py"):
            if path.resolve() == own or path.name == "access.py":  # access.py: who may call a route (not data)
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if MASKING.search(line) and "classification" not in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_clearance_is_set_with_the_users_cli_and_kept_on_a_password_change(tmp_path, cli_env):
    import subprocess
    import sys

    from command.trust.auth import save_user

    path = tmp_path / "users.yaml"
    proc = subprocess.run([sys.executable, "-m", "command", "users", "add", "desk2", "--department", "police",
                           "--clearance", "secret", "--file", str(path)], input="long-enough-1\n", text=True,
                          capture_output=True, cwd=ROOT, timeout=120, env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "clearance secret" in proc.stdout
    assert load_users(path)["desk2"].clearance == "secret"
    save_user(path, username="desk2", password="long-enough-2", department="police")  # no --clearance: kept
    assert load_users(path)["desk2"].clearance == "secret"
    save_user(path, username="desk3", password="long-enough-3", department="fire_rescue")
    assert load_users(path)["desk3"].clearance == "internal"  # a new account: internal unless named
    with pytest.raises(Exception, match="clearance must be one of"):
        save_user(path, username="desk4", password="long-enough-4", department="police", clearance="top")
