"""Scenario folders that arrive as a zip archive (the exercise page), and scenario folders written back
from an edited events list. No Redis here: files in, a checked scenario folder out.

An archive is hostile until checked. Before anything is written: its size, its number of files, each
member's name (no absolute path, drive letter, backslash or ``..``), its type (regular files and
folders only: no symlink, no device), no encrypted member, and the declared unpacked sizes (their
total, and each file's compression ratio: a zip bomb declares a huge file that compresses to
nothing). While unpacking, the bytes actually read are counted against the same limits (a member may
lie about its size). The folder is then validated with the command line's own loader
(`load_scenario`: the same fatal errors with file and line, the same quarantined rows), and only a
folder that loads is moved into place; anything else is deleted. A scenario.yaml may only name files
inside its own folder (left out, a file is the sample's, as on the command line).
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import secrets
import shutil
import stat
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from command.errors import InvalidInput
from command.scenarios.load import Scenario, load_scenario
from command.scenarios.reference import ScenarioError, read_yaml, resolve

SCENARIO_FILE = "scenario.yaml"
META_FILE = "upload.json"  # beside the scenario's files: who uploaded or saved it, when, from what
TRUTH_FILE = "truth.csv"
# scenario.yaml's keys that name a file, and the name each has in a self-contained folder
PATH_KEYS = {"stations": "stations.geojson", "zones": "zones.geojson", "resources": "resources.csv",
             "rules": "rules.yaml", "readings": "readings.csv", "incidents": "incidents.csv",
             "rivers": "rivers.geojson", "roads": "roads.geojson"}
_JUNK = ("__MACOSX/",)  # what archivers add beside the files: skipped, never unpacked
_JUNK_NAMES = (".DS_Store", "Thumbs.db")
_CHUNK = 64 * 1024
_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")
_MAX_NAME_PART = 255  # bytes: what a Linux file system takes for one name (longer fails at unpacking)
# the drill runner lists every tick of a scenario from its start to its last event at once: a tick of 0
# would never end that list, and a tiny tick over a far-off inject makes it millions long
MAX_TICKS = 100_000


class UploadError(InvalidInput):
    """An archive or an edited scenario that is refused; the message says why (file and line)."""


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int = 700_000
    max_files: int = 40
    max_unpacked_bytes: int = 60_000_000
    max_ratio: float = 100.0
    max_kept: int = 100

    @classmethod
    def of(cls, settings: Any) -> UploadLimits:
        return cls(settings.upload_max_bytes, settings.upload_max_files, settings.upload_max_unpacked_bytes,
                   settings.upload_max_ratio, settings.upload_max_kept)


@dataclass
class Stored:
    """A scenario folder that loaded, in place under its id."""

    id: str
    folder: Path
    scenario: Scenario
    meta: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# The archive
# ------------------------------------------------------------------------------------------------
def _member_problem(name: str) -> str | None:
    if "\x00" in name:
        return "a NUL character in its name"
    if "\\" in name:
        return "a backslash in its name (write paths with /)"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return "a path that leaves the folder (..)"
    if any(len(p.encode("utf-8")) > _MAX_NAME_PART for p in parts):
        return f"a name too long (over {_MAX_NAME_PART} bytes)"
    return None


def _is_junk(name: str) -> bool:
    return name.startswith(_JUNK) or PurePosixPath(name).name in _JUNK_NAMES


def check_archive(data: bytes, limits: UploadLimits) -> tuple[zipfile.ZipFile, list[tuple[zipfile.ZipInfo, str]]]:
    """The archive opened and its files, each with its name inside the scenario folder (a single top
    folder holding scenario.yaml is taken off). Raises UploadError, before anything is written."""
    if len(data) > limits.max_bytes:
        raise UploadError(f"the archive is {len(data):,} bytes: at most {limits.max_bytes:,} may be uploaded")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise UploadError(f"not a zip archive: {exc}") from None
    if len(infos) > 4 * limits.max_files:  # folders included: bounded before the loop
        raise UploadError(f"the archive holds {len(infos):,} entries: at most {limits.max_files} files may be uploaded")
    files: list[zipfile.ZipInfo] = []
    declared = 0
    for info in infos:
        name = info.filename
        problem = _member_problem(name)
        if problem:
            raise UploadError(f"{name!r}: refused: {problem}")
        if _is_junk(name):
            continue
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if stat.S_ISLNK(mode):
            raise UploadError(f"{name}: refused: a symbolic link")
        if info.is_dir():
            continue
        if kind not in (0, stat.S_IFREG):
            raise UploadError(f"{name}: refused: not a regular file")
        if info.flag_bits & 0x1:
            raise UploadError(f"{name}: refused: encrypted")
        files.append(info)
        if len(files) > limits.max_files:
            raise UploadError(f"the archive holds more than {limits.max_files} files")
        declared += info.file_size
        if declared > limits.max_unpacked_bytes:
            raise UploadError(f"the archive unpacks to more than {limits.max_unpacked_bytes:,} bytes")
        if info.file_size > 1_000 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise UploadError(f"{name}: refused: it would unpack to {info.file_size:,} bytes from "
                              f"{info.compress_size:,} (more than {limits.max_ratio:g} times: a zip bomb?)")
    names = [i.filename for i in files]
    if len(set(names)) != len(names):
        raise UploadError("the archive holds the same file twice")
    paths = {PurePosixPath(n).as_posix() for n in names}
    folders = {"/".join(PurePosixPath(n).parts[:i]) for n in paths for i in range(1, len(PurePosixPath(n).parts))}
    clash = sorted(paths & folders)
    if clash:
        raise UploadError(f"{clash[0]}: refused: the archive holds a file and a folder of this name")
    if SCENARIO_FILE in names:
        prefix = ""
    else:
        tops = {n.split("/", 1)[0] for n in names}
        top = next(iter(tops)) if len(tops) == 1 else None
        if top is None or f"{top}/{SCENARIO_FILE}" not in names:
            raise UploadError(f"no {SCENARIO_FILE} at the top of the archive (or of its one folder)")
        prefix = top + "/"
    return zf, [(i, i.filename[len(prefix):]) for i in files]


def _unpack(zf: zipfile.ZipFile, members: Sequence[tuple[zipfile.ZipInfo, str]], dest: Path,
            limits: UploadLimits) -> None:
    """Write each member under `dest`, counting the bytes really read against the limits."""
    total = 0
    for info, rel in members:
        target = dest.joinpath(*PurePosixPath(rel).parts)
        if not target.resolve().is_relative_to(dest.resolve()):
            raise UploadError(f"{info.filename}: refused: a path that leaves the folder")
        written = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, target.open("xb") as out:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    total += len(chunk)
                    if written > info.file_size or total > limits.max_unpacked_bytes:
                        raise UploadError(f"{info.filename}: refused: it unpacks to more than it declares")
                    out.write(chunk)
        except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
            if isinstance(exc, FileExistsError):
                raise UploadError(f"{info.filename}: the archive holds this file twice") from None
            # an OSError's text names the server's staging folder: its reason only
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise UploadError(f"{info.filename}: cannot be unpacked: {why}") from None


# ------------------------------------------------------------------------------------------------
# The folder
# ------------------------------------------------------------------------------------------------
def _key_line(path: Path, key: str) -> int | None:
    """The line of `key` at the top of a YAML mapping (for messages)."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8-sig"))
    except (OSError, yaml.YAMLError):
        return None
    if isinstance(node, yaml.MappingNode):
        for k, _v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k.start_mark.line + 1
    return None


def check_own_files(folder: Path) -> None:
    """scenario.yaml names only files inside `folder` (an uploaded scenario must not read the server's)."""
    sy = folder / SCENARIO_FILE
    doc = read_yaml(sy)
    if not isinstance(doc, dict):
        return  # load_scenario says what is wrong with it
    root = folder.resolve()
    truth = folder / TRUTH_FILE  # read by the backtest by this name only
    if truth.exists() and not truth.is_file():
        raise UploadError(f"{TRUTH_FILE}: not a file (a folder of that name)")
    for key in PATH_KEYS:
        value = doc.get(key)
        if not value:
            default = folder / PATH_KEYS[key]
            if default.exists() and not default.is_file():
                raise UploadError(f"{PATH_KEYS[key]}: not a file (a folder of that name)")
            continue
        line = _key_line(sy, key)
        where = f"{SCENARIO_FILE}:{line}" if line else SCENARIO_FILE
        if not isinstance(value, str):
            raise UploadError(f"{where}: `{key}` must be a file name")
        target = (folder / value).resolve()
        if PurePosixPath(value).is_absolute() or not target.is_relative_to(root):
            raise UploadError(f"{where}: `{key}`: {value!r} is outside the scenario folder (put the file in the "
                              f"archive, or leave `{key}` out to use the sample's)")
        if target.exists() and not target.is_file():
            raise UploadError(f"{where}: `{key}`: {value!r} is not a file")


def _relative_message(message: str, folder: Path) -> str:
    """A loader's message with the server's folder taken off its file names."""
    for prefix in {str(folder.resolve()), str(folder)}:
        message = message.replace(prefix + "/", "").replace(prefix, ".")
    return message


def check_no_aliases(text: str, label: str) -> None:
    """Refuse YAML aliases (``*name``) in an uploaded file: a few lines of them nest into millions of
    items once the document is walked or written as JSON (a "billion laughs"). Scenario and rules files
    do not need them. A file that does not parse is left to the loader, which names its line."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1 if event.start_mark else "?"
                raise UploadError(f"{label}:{line}: YAML aliases (*name) are not accepted in an upload")
    except yaml.YAMLError:
        return


def _validate(folder: Path) -> Scenario:
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in (".yaml", ".yml") and p.is_file():
            check_no_aliases(p.read_text(encoding="utf-8-sig", errors="replace"), p.relative_to(folder).as_posix())
    try:
        check_own_files(folder)
        sc = load_scenario(folder)
    except UploadError:
        raise
    except ScenarioError as exc:
        raise UploadError(_relative_message(exc.message, folder)) from None
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError, RecursionError,
            OSError) as exc:
        # a file shaped as the loader never expects (a feature that is not an object ...): refused, not a 500
        raise UploadError(_relative_message(f"the scenario cannot be read: {exc.__class__.__name__}: {exc}",
                                            folder)) from None
    ticks = (sc.end - sc.start) // sc.tick_ms
    if ticks > MAX_TICKS:
        raise UploadError(f"{SCENARIO_FILE}: `tick`: {ticks:,} ticks from the start to the last reading or event "
                          f"(at most {MAX_TICKS:,}): use a longer tick or a shorter scenario")
    return sc


def new_id(name: str) -> str:
    """A folder id from a scenario's name: lower-case letters, digits, - and _, then a random part."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")[:32] or "scenario"
    return f"{slug}-{secrets.token_hex(3)}"


def valid_id(text: Any) -> bool:
    return isinstance(text, str) and _ID_RE.fullmatch(text) is not None


def _store(staging: Path, root: Path, meta: dict[str, Any]) -> Stored:
    sc = _validate(staging)
    sid = new_id(sc.name)
    final = root / sid
    meta = {**meta, "id": sid, "name": sc.name, "quarantine": sc.quarantine[:500],
            "quarantined": len(sc.quarantine), "readings": len(sc.readings)}
    (staging / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    staging.rename(final)
    return Stored(sid, final, dataclasses.replace(sc, folder=final), meta)


def _staging(root: Path, limits: UploadLimits) -> Path:
    """A fresh staging folder under `root` (one a crashed upload left behind an hour ago is removed);
    UploadError when `root` already keeps as many scenarios as the limits allow."""
    root.mkdir(parents=True, exist_ok=True)
    if len(stored(root)) >= limits.max_kept:
        raise UploadError(f"{limits.max_kept} scenarios are kept already: delete some before adding more")
    for old in root.glob(".staging-*"):
        if old.stat().st_mtime < time.time() - 3600:
            shutil.rmtree(old, ignore_errors=True)
    path = root / f".staging-{secrets.token_hex(8)}"
    path.mkdir()
    return path


def unpack_scenario(data: bytes, root: Path, limits: UploadLimits, meta: dict[str, Any] | None = None) -> Stored:
    """Check an uploaded archive, unpack it and validate it as a scenario folder; keep it under `root`
    only when it loads. Raises UploadError (nothing is left behind)."""
    zf, members = check_archive(data, limits)
    staging = _staging(root, limits)
    try:
        with zf:
            _unpack(zf, members, staging, limits)
        return _store(staging, root, dict(meta or {}))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Stored folders: list, read, zip
# ------------------------------------------------------------------------------------------------
def stored(root: Path) -> list[dict[str, Any]]:
    """The scenario folders kept under `root`, newest first (each one's meta)."""
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for p in root.iterdir():
        if not valid_id(p.name) or not (p / SCENARIO_FILE).is_file():
            continue
        try:
            meta = json.loads((p / META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {"id": p.name, "name": p.name}
        meta["folder"] = str(p)
        out.append(meta)
    return sorted(out, key=lambda m: str(m.get("at", "")), reverse=True)


def folder_of(root: Path, sid: Any) -> Path | None:
    """The kept folder of id `sid`, or None (a crafted id never leaves `root`)."""
    if not valid_id(sid):
        return None
    p = root / sid
    return p if (p / SCENARIO_FILE).is_file() else None


def delete_kept(root: Path, sid: Any) -> bool:
    """Delete the kept folder of id `sid`; False when there is none (a crafted id never leaves `root`)."""
    folder = folder_of(root, sid)
    if folder is None:
        return False
    shutil.rmtree(folder)
    return True


def zip_folder(folder: Path) -> bytes:
    """A scenario folder as a zip (its files under one folder named after it; the meta file left out)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and not p.is_symlink() and p.name != META_FILE:
                zf.write(p, f"{folder.name}/{p.relative_to(folder).as_posix()}")
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------
# The events list: injects and scripted actions (and objectives) of a scenario, edited and saved back
# ------------------------------------------------------------------------------------------------
EVENT_SECTIONS = ("injects", "actions", "objectives")
# the key the table's `type` column stands for: an objective has a `kind` and no `at`
_TYPE_KEY = {"injects": "type", "actions": "type", "objectives": "kind"}


def _to_text(v: Any) -> Any:
    return v.isoformat() if hasattr(v, "isoformat") else v


def events_of(folder: Path) -> list[dict[str, Any]]:
    """A scenario's events as rows: {section, at, type, fields} with `fields` the rest of the item as a
    one-line YAML mapping, in the file's order (`at` as written: a duration from the start)."""
    doc = read_yaml(folder / SCENARIO_FILE)
    rows: list[dict[str, Any]] = []
    if not isinstance(doc, dict):
        return rows
    for section in EVENT_SECTIONS:
        items = doc.get(section)
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            key = _TYPE_KEY[section]
            rest = {k: _to_text(v) for k, v in item.items() if k not in ("at", key)}
            rows.append({"section": section, "at": str(item.get("at", "")), "type": str(item.get(key, "")),
                         "fields": yaml.safe_dump(rest, default_flow_style=True, allow_unicode=True, width=10_000,
                                                  sort_keys=False).strip() if rest else ""})
    return rows


def items_of(rows: Iterable[Any]) -> dict[str, list[dict[str, Any]]]:
    """Edited rows back into scenario.yaml's lists; a row that cannot be read raises UploadError naming
    its row number (counted from 1 as the table shows them)."""
    out: dict[str, list[dict[str, Any]]] = {s: [] for s in EVENT_SECTIONS}
    for n, row in enumerate(rows, 1):
        where = f"row {n}"
        if not isinstance(row, dict):
            raise UploadError(f"{where}: not a row of the table")
        section = row.get("section")
        if section not in EVENT_SECTIONS:
            raise UploadError(f"{where}: `section` must be one of {', '.join(EVENT_SECTIONS)}")
        at, kind, text = row.get("at") or "", row.get("type"), row.get("fields") or ""
        timed = section != "objectives"
        if not isinstance(at, str) or (timed and not at.strip()) or not isinstance(kind, str) or not kind.strip():
            raise UploadError(f"{where}: `at` (e.g. 2h30m) and `type` are required" if timed
                              else f"{where}: an objective's `type` (its kind) is required")
        if not timed and at.strip():
            raise UploadError(f"{where}: an objective has no `at` (its `within` goes in `fields`)")
        if not isinstance(text, str) or len(text) > 4000:
            raise UploadError(f"{where}: `fields` must be a YAML mapping such as {{resource_id: FR-1, status: available}}")
        try:
            rest = yaml.safe_load(text) if text.strip() else {}
        except yaml.YAMLError as exc:
            raise UploadError(f"{where}: `fields`: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
        except RecursionError:  # a few kB of brackets nest past the parser's recursion
            raise UploadError(f"{where}: `fields`: nested too deeply") from None
        if not isinstance(rest, dict) or any(not isinstance(k, str) for k in rest):
            raise UploadError(f"{where}: `fields` must be a YAML mapping such as {{resource_id: FR-1, status: available}}")
        if {"at", _TYPE_KEY[section]} & set(rest):
            raise UploadError(f"{where}: `fields` may not repeat `at` or `{_TYPE_KEY[section]}`")
        head = {"at": at.strip(), "type": kind.strip()} if timed else {"kind": kind.strip()}
        out[section].append({**head, **rest} if timed else {**rest, **head})
    return out


def _source_files(folder: Path, doc: dict[str, Any]) -> dict[str, Path]:
    """Every file the loader would read for `folder`, by scenario.yaml key (as load_scenario finds them)."""
    found: dict[str, Path] = {}
    for key in ("stations", "zones", "resources", "rules", "readings"):
        found[key] = resolve(folder, doc, key, PATH_KEYS[key])
    roads = resolve(folder, doc, "roads", PATH_KEYS["roads"], required=False)
    if roads is not None:
        found["roads"] = roads
    inc = folder / str(doc.get("incidents") or PATH_KEYS["incidents"])
    if inc.exists():
        found["incidents"] = inc
    rivers = (folder / str(doc["rivers"])).resolve() if doc.get("rivers") else folder / PATH_KEYS["rivers"]
    if doc.get("rivers") or rivers.exists():
        found["rivers"] = rivers
    return found


def save_events(source: Path, rows: Iterable[Any], root: Path, meta: dict[str, Any] | None = None,
                limits: UploadLimits = UploadLimits()) -> Stored:
    """`source` with its events replaced by `rows`, written as a self-contained scenario folder (every
    file it reads copied in, under its usual name) and validated as an upload is. Raises UploadError
    (with the loader's message) and keeps nothing when it does not load."""
    items = items_of(rows)
    try:
        doc = read_yaml(source / SCENARIO_FILE)
        if not isinstance(doc, dict):
            raise ScenarioError(f"{SCENARIO_FILE}: expected a mapping")
        files = _source_files(source, doc)
    except ScenarioError as exc:
        raise UploadError(_relative_message(exc.message, source)) from None
    staging = _staging(root, limits)
    try:
        out = {k: v for k, v in doc.items() if k not in PATH_KEYS and k not in EVENT_SECTIONS}
        for key, path in files.items():
            if not path.is_file():
                raise UploadError(f"{key}: {path.name}: file not found")
            shutil.copyfile(path, staging / PATH_KEYS[key])
            out[key] = PATH_KEYS[key]
        if (source / TRUTH_FILE).is_file():
            shutil.copyfile(source / TRUTH_FILE, staging / TRUTH_FILE)
        for section in EVENT_SECTIONS:
            if items[section]:
                out[section] = items[section]
        (staging / SCENARIO_FILE).write_text(
            yaml.safe_dump(out, allow_unicode=True, sort_keys=False, width=10_000), encoding="utf-8")
        return _store(staging, root, dict(meta or {}))
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


__all__ = ["check_no_aliases", "UploadError", "UploadLimits", "Stored", "check_archive", "unpack_scenario", "stored", "folder_of", "delete_kept",
           "zip_folder", "events_of", "items_of", "save_events", "valid_id", "new_id"]
