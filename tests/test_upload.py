"""Scenario folders uploaded as a zip (command/scenarios/upload.py): every hostile archive is refused
before anything is kept, a broken scenario is refused with the loader's file and line, a good one is
kept with its quarantined rows; the events list edited and saved back replays as the same folder
written by hand."""

from __future__ import annotations

import io
import json
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from command.scenarios.upload import (
    UploadError,
    UploadLimits,
    events_of,
    folder_of,
    save_events,
    stored,
    unpack_scenario,
    zip_folder,
)

from .conftest import ROOT, SCENARIOS

LIMITS = UploadLimits(max_bytes=700_000, max_files=10, max_unpacked_bytes=5_000_000, max_ratio=100)
COMMON = SCENARIOS / "tiny_common"
ZONE = SCENARIOS / "rule_zone_incident"


def own_folder(dest: Path, src: Path = ZONE) -> Path:
    """`src` made self-contained: its reference files copied in, scenario.yaml naming them locally."""
    dest.mkdir(parents=True)
    for p in src.iterdir():
        shutil.copyfile(p, dest / p.name)
    for name in ("stations.geojson", "zones.geojson", "resources.csv"):
        shutil.copyfile(COMMON / name, dest / name)
    text = (src / "scenario.yaml").read_text().replace("../tiny_common/", "")
    (dest / "scenario.yaml").write_text(text)
    return dest


def zip_of(entries: dict[str, bytes | str], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def folder_entries(folder: Path, top: str = "") -> dict[str, bytes | str]:
    return {f"{top}{p.name}": p.read_bytes() for p in folder.iterdir()}


def kept(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def refused(data: bytes, root: Path, limits: UploadLimits = LIMITS) -> str:
    with pytest.raises(UploadError) as exc:
        unpack_scenario(data, root, limits)
    assert kept(root) == []  # nothing half-loaded, no staging folder left
    return exc.value.message


# ---- good archives ----------------------------------------------------------------------------------------
def test_a_good_archive_is_kept_with_its_quarantined_rows(tmp_path):
    data = zip_of(folder_entries(own_folder(tmp_path / "src")))
    root = tmp_path / "uploads"
    st = unpack_scenario(data, root, LIMITS, {"by": "planner"})
    assert st.scenario.name == "rule_zone_incident"
    assert [q["line"] for q in st.meta["quarantine"]] == [5]  # the garbled position of incidents.csv
    assert st.meta["quarantine"][0]["source"] == "incidents.csv" and "lat" in st.meta["quarantine"][0]["reason"]
    assert kept(root) == [st.id] and folder_of(root, st.id) == st.folder
    assert [m["id"] for m in stored(root)] == [st.id] and stored(root)[0]["by"] == "planner"
    # the kept folder is one the command line loads by itself, with its own files only
    assert (st.folder / "stations.geojson").read_bytes() == (COMMON / "stations.geojson").read_bytes()


def test_an_archive_of_one_folder_is_taken_from_inside_it_and_junk_is_skipped(tmp_path):
    entries = folder_entries(own_folder(tmp_path / "src"), "my exercise/")
    entries["__MACOSX/my exercise/._scenario.yaml"] = b"\x00\x05junk"
    entries["my exercise/.DS_Store"] = b"junk"
    st = unpack_scenario(zip_of(entries), tmp_path / "uploads", LIMITS)
    assert sorted(p.name for p in st.folder.iterdir()) == sorted(
        ["incidents.csv", "readings.csv", "rules.yaml", "scenario.yaml", "stations.geojson", "zones.geojson",
         "resources.csv", "upload.json"])


def test_no_more_scenarios_than_the_limit_are_kept(tmp_path):
    data = zip_of(folder_entries(own_folder(tmp_path / "src")))
    two = UploadLimits(max_bytes=700_000, max_files=10, max_unpacked_bytes=5_000_000, max_ratio=100, max_kept=2)
    root = tmp_path / "uploads"
    first, second = unpack_scenario(data, root, two), unpack_scenario(data, root, two)
    with pytest.raises(UploadError, match="2 scenarios are kept already"):
        unpack_scenario(data, root, two)
    with pytest.raises(UploadError, match="2 scenarios are kept already"):
        save_events(ZONE, events_of(ZONE), root, limits=two)
    assert kept(root) == sorted([first.id, second.id])


def test_zip_folder_gives_back_an_archive_that_uploads_again(tmp_path):
    st = unpack_scenario(zip_of(folder_entries(own_folder(tmp_path / "src"))), tmp_path / "a", LIMITS)
    again = unpack_scenario(zip_folder(st.folder), tmp_path / "b", LIMITS)
    assert again.scenario.injects == st.scenario.injects and again.scenario.name == st.scenario.name


# ---- hostile archives --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../evil.yaml", "a/../../evil.yaml", "/etc/evil.yaml", "C:/evil.yaml",
                                  "a\\..\\evil.yaml"])
def test_paths_that_leave_the_folder_are_refused(tmp_path, name):
    entries = folder_entries(own_folder(tmp_path / "src"))
    entries[name] = "x: 1"
    message = refused(zip_of(entries), tmp_path / "uploads")
    assert "refused" in message
    assert not (tmp_path / "evil.yaml").exists()


def test_a_symlink_is_refused(tmp_path):
    entries = folder_entries(own_folder(tmp_path / "src"))
    buf = io.BytesIO(zip_of(entries))
    with zipfile.ZipFile(buf, "a") as zf:
        info = zipfile.ZipInfo("rules_link.yaml")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    assert "symbolic link" in refused(buf.getvalue(), tmp_path / "uploads")


def test_an_archive_too_big_is_refused_before_it_is_opened(tmp_path):
    data = zip_of(folder_entries(own_folder(tmp_path / "src")))
    small = UploadLimits(max_bytes=len(data) - 1, max_files=10, max_unpacked_bytes=5_000_000, max_ratio=100)
    assert f"at most {len(data) - 1:,}" in refused(data, tmp_path / "uploads", small)


def test_too_many_files_are_refused(tmp_path):
    entries = folder_entries(own_folder(tmp_path / "src"))  # 7 files
    entries.update({f"notes/{i}.txt": "x" for i in range(4)})
    assert "more than 10 files" in refused(zip_of(entries), tmp_path / "uploads")


def test_a_zip_bomb_is_refused_by_its_declared_size_and_ratio(tmp_path):
    entries = folder_entries(own_folder(tmp_path / "src"))
    entries["padding.csv"] = b"0" * 3_000_000  # deflates a thousandfold
    assert "zip bomb" in refused(zip_of(entries), tmp_path / "uploads")
    entries["padding.csv"] = bytes(range(256)) * 24_000  # 6 MB that does not compress much
    assert "more than 5,000,000 bytes" in refused(zip_of(entries, zipfile.ZIP_STORED), tmp_path / "uploads",
                                                  UploadLimits(max_bytes=10_000_000, max_files=10,
                                                               max_unpacked_bytes=5_000_000, max_ratio=100))


def test_a_member_that_unpacks_to_more_than_it_declares_is_refused(tmp_path):
    entries = folder_entries(own_folder(tmp_path / "src"))
    data = bytearray(zip_of(entries, zipfile.ZIP_STORED))
    # shrink the declared size of readings.csv in the central directory: its real bytes are more
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("readings.csv")
    cd = data.rfind(b"PK\x01\x02", 0, data.rfind(b"readings.csv") + 1)
    real = int.from_bytes(data[cd + 24:cd + 28], "little")
    assert real == info.file_size
    data[cd + 24:cd + 28] = (real // 2).to_bytes(4, "little")
    message = refused(bytes(data), tmp_path / "uploads")
    assert "readings.csv" in message


def test_not_a_zip_is_refused(tmp_path):
    assert "not a zip archive" in refused(b"name: x\nstart: now\n", tmp_path / "uploads")


def test_an_archive_without_scenario_yaml_is_refused(tmp_path):
    assert "no scenario.yaml" in refused(zip_of({"a/readings.csv": "x", "b/rules.yaml": "y"}), tmp_path / "uploads")


# ---- broken scenarios: the loader's message, with the file and the line --------------------------------------
def test_broken_yaml_is_refused_with_its_file_and_line(tmp_path):
    entries = folder_entries(own_folder(tmp_path / "src"))
    entries["scenario.yaml"] = "name: broken\nstart: 2026-07-01T00:00:00+08:00\ninjects:\n  - {at: 2h, type: [\n"
    message = refused(zip_of(entries), tmp_path / "uploads")
    assert message.startswith("scenario.yaml:5: invalid YAML"), message
    assert str(tmp_path) not in message  # the server's folders are not shown


def test_a_bad_readings_header_is_refused_with_its_file_and_line(tmp_path):
    entries = folder_entries(own_folder(tmp_path / "src"))
    entries["readings.csv"] = "when,station_id,kind,value,unit\n"
    assert refused(zip_of(entries), tmp_path / "uploads").startswith("readings.csv:1: bad header")


def test_a_file_shaped_as_the_loader_never_expects_is_refused_not_a_crash(tmp_path):
    entries = folder_entries(own_folder(tmp_path / "src"))
    entries["zones.geojson"] = '{"type": "FeatureCollection", "features": [1, 2]}'
    assert "cannot be read" in refused(zip_of(entries), tmp_path / "uploads")


def test_scenario_yaml_may_not_name_a_file_outside_its_folder(tmp_path):
    entries = folder_entries(own_folder(tmp_path / "src"))
    entries["scenario.yaml"] = (ZONE / "scenario.yaml").read_text()  # stations: ../tiny_common/...
    message = refused(zip_of(entries), tmp_path / "uploads")
    assert message.startswith("scenario.yaml:6: `stations`") and "outside the scenario folder" in message


def test_yaml_aliases_are_refused_in_an_upload(tmp_path):
    entries = folder_entries(own_folder(tmp_path / "src"))
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    entries["scenario.yaml"] = entries["scenario.yaml"] + b"\n" + laughs.encode()
    message = refused(zip_of(entries), tmp_path / "uploads")
    assert message.startswith("scenario.yaml:") and "aliases" in message


# ---- the events list -------------------------------------------------------------------------------------
def test_events_of_reads_the_injects_as_rows():
    rows = events_of(ZONE)
    assert rows == [{"section": "injects", "at": "2h30m", "type": "incident",
                     "fields": "{incident_id: INJ-1, category: trapped_people, lat: 30.02, lon: 114.02, severity: red, "
                               "description: Family on a roof}"}]


@pytest.mark.parametrize("row, why", [
    ({"section": "notes", "at": "1h", "type": "x", "fields": ""}, "row 2: `section`"),
    ({"section": "objectives", "at": "1h", "type": "no_unacknowledged", "fields": "{id: O1, text: t}"}, "row 2: an objective has no `at`"),
    ({"section": "injects", "at": "", "type": "incident", "fields": ""}, "row 2: `at`"),
    ({"section": "injects", "at": "1h", "type": "resource_status", "fields": "{a: [1"}, "row 2: `fields`: invalid YAML"),
    ({"section": "injects", "at": "1h", "type": "resource_status", "fields": "- 1"}, "row 2: `fields` must be"),
    ({"section": "injects", "at": "1h", "type": "resource_status",
      "fields": "{resource_id: C1, status: available, x: &a [1, 2], y: [*a, *a]}"}, "aliases (*name) are not accepted"),
    ({"section": "injects", "at": "1h", "type": "resource_status", "fields": "{resource_id: FR-1}"},
     "inject #2: resource_status inject is missing status"),
    ({"section": "actions", "at": "1h", "type": "dispatch", "fields": "{rule: r}"}, "action #1 (dispatch): missing subject"),
])
def test_a_bad_edit_is_refused_with_its_row_and_nothing_is_kept(tmp_path, row, why):
    rows = events_of(ZONE) + [row]
    with pytest.raises(UploadError) as exc:
        save_events(ZONE, rows, tmp_path / "saved")
    assert why in exc.value.message
    assert kept(tmp_path / "saved") == []


EDITED_INJECTS = """injects:
  - {at: 2h45m, type: incident, incident_id: INJ-1, category: trapped_people, lat: 30.02, lon: 114.02, severity: red, description: Family on a roof}
  - {at: 1h30m, type: resource_status, resource_id: C1, status: out_of_service}
actions:
  - {at: 2h50m, type: dispatch, rule: incident-in-risk-zone, subject: INJ-1}
"""


def _replay(cli_env, folder: Path, out: Path) -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-m", "command", "replay", str(folder), "--speed", "max", "--quiet",
                           "--out", str(out), "--discard"], cwd=ROOT, env=cli_env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    files = {p.name: p.read_text() for p in sorted(out.iterdir()) if p.suffix in (".jsonl", ".json", ".csv")}
    # each replay has a namespace of its own (a random part): the one difference allowed
    return {k: re.sub(r"rule_zone_incident-[0-9a-f]{8}", "<ns>", v) for k, v in files.items()}


def test_edited_events_saved_back_replay_as_the_same_folder_written_by_hand(cli_env, tmp_path):
    resources = (COMMON / "resources.csv").read_text()
    assert "C1," in resources
    rows = events_of(ZONE)
    rows[0]["at"] = "2h45m"
    rows.append({"section": "injects", "at": "1h30m", "type": "resource_status",
                 "fields": "{resource_id: C1, status: out_of_service}"})
    rows.append({"section": "actions", "at": "2h50m", "type": "dispatch",
                 "fields": "{rule: incident-in-risk-zone, subject: INJ-1}"})
    saved = save_events(ZONE, rows, tmp_path / "saved", {"by": "planner"})
    assert [(i.type, i.at - saved.scenario.start) for i in saved.scenario.injects] == [
        ("resource_status", 90 * 60_000), ("incident", 165 * 60_000)]
    by_hand = own_folder(tmp_path / "by_hand")
    text = (by_hand / "scenario.yaml").read_text()
    (by_hand / "scenario.yaml").write_text(text[:text.index("injects:")] + EDITED_INJECTS)
    edited = _replay(cli_env, saved.folder, tmp_path / "out_saved")
    hand = _replay(cli_env, by_hand, tmp_path / "out_hand")
    original = _replay(cli_env, ZONE, tmp_path / "out_original")
    assert edited.keys() == hand.keys() and "alerts.jsonl" in edited
    for name in edited:
        assert edited[name] == hand[name], name
    assert edited["alerts.jsonl"] != original["alerts.jsonl"]  # the edit changed what happened
    tasks = [json.loads(x) for x in edited.get("tasks.jsonl", "").splitlines()]
    assert {t["subject"] for t in tasks} == {"INJ-1"}  # the scripted dispatch was applied


def test_objectives_are_rows_of_the_events_list_and_saved_back(tmp_path):
    rows = events_of(ZONE) + [{"section": "objectives", "at": "", "type": "no_unacknowledged",
                               "fields": "{id: O1, text: No task is left unacknowledged, text_zh: 无未确认任务}"}]
    saved = save_events(ZONE, rows, tmp_path / "saved")
    assert [(o.id, o.kind, o.text_zh) for o in saved.scenario.objectives] == [("O1", "no_unacknowledged", "无未确认任务")]
    again = events_of(saved.folder)
    assert again[-1] == {"section": "objectives", "at": "", "type": "no_unacknowledged",
                         "fields": "{id: O1, text: No task is left unacknowledged, text_zh: 无未确认任务}"}
    wrong = rows[:-1] + [{"section": "objectives", "at": "", "type": "dispatch_within",
                          "fields": "{id: O1, text: Dispatch fast, rule: no-such-rule, within: 10m}"}]
    with pytest.raises(UploadError, match=r"scenario.yaml: objective #1 \(O1, dispatch_within\): `rule`: no rule"):
        save_events(ZONE, wrong, tmp_path / "saved2")
    assert kept(tmp_path / "saved2") == []
