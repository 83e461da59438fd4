"""Scenario folders: loading and validation (the contract in docs/scenarios.md).

A scenario that cannot be used stops with a `ScenarioError` naming the file and, where there is
one, the line. Rows that are merely bad (empty or non-numeric value, unknown station, unknown unit)
do not stop anything: they are returned as quarantine records with a reason, and the replay puts
them on the dead-letter stream.

Values go through the project's one cleaner for each thing: a reading's value through
`command.values.clean_number`, an incident (an ``incidents.csv`` row or an ``incident`` inject)
through the one incident validator, `command.ops.incidents.validate_incident` (source ``DRILL``),
whose message is the quarantine reason.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from command.errors import InvalidInput
from command.geo import ZoneLocator
from command.models import READING_KINDS, Incident, Resource, Station, Zone
from command.ops.incidents import DRILL, validate_incident
from command.rules import RuleSet
from command.scenarios.actions import Action, parse_actions
from command.scenarios.reference import (
    ScenarioError,
    check_header,
    features,
    load_resources,
    load_roads,
    load_rules,
    load_stations,
    load_zones,
    read_yaml,
    resolve,
)
from command.scoring.objectives import OBJECTIVE_FIELDS, OBJECTIVE_KINDS, Objective
from command.timeutil import parse_duration, parse_time
from command.units import UnitError, factor_for
from command.values import clean_number

READINGS_HEADER = ["time", "station_id", "kind", "value", "unit"]
INCIDENTS_HEADER = ["time", "incident_id", "category", "lat", "lon", "severity", "description"]
INJECT_TYPES = ("incident", "reading", "resource_status")
_OFFSET_RE = r"(?:Z|[+-]\d{2}:?\d{2})\Z"  # `\Z`, never `$`: that lets a trailing newline through


MIN_TICK_MS = 1_000  # the shortest scenario clock tick


@dataclass
class Inject:
    at: int  # epoch ms
    type: str
    data: dict[str, Any]
    line: int | None = None


@dataclass
class Scenario:
    folder: Path
    name: str
    description: str
    start: int  # epoch ms
    timezone: str | None
    stations: dict[str, Station]
    zones: dict[str, Zone]
    resources: list[Resource]
    ruleset: RuleSet
    rules_doc: dict[str, Any]
    # Valid readings in SI, sorted by time: columns t (int64 ms), station_id, kind, value (float64).
    readings: pd.DataFrame
    incidents: list[Incident]
    injects: list[Inject]
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    tick_ms: int = 5 * 60_000
    description_zh: str = ""
    basemap: dict[str, Any] | None = None  # GeoJSON of rivers etc., drawn under everything
    roads: dict[str, Any] | None = None  # the road network, validated (command.planning.roads); None: none
    actions: list[Action] = field(default_factory=list)  # scripted actions (command/scenarios/actions.py)
    objectives: list[Objective] = field(default_factory=list)  # what the exercise tests (command/scoring/objectives.py)

    @property
    def end(self) -> int:
        times = [self.start]
        if len(self.readings):
            times.append(int(self.readings["t"].iloc[-1]))
        times += [i.time for i in self.incidents] + [i.at for i in self.injects] + [a.at for a in self.actions]
        return max(times)


# ------------------------------------------------------------------------------------------------
def _quarantine_record(source: str, line: int, row: dict, reason: str) -> dict[str, Any]:
    return {"source": source, "line": line, "row": row, "reason": reason}


def _clean_value(raw: str) -> tuple[float, str]:
    """A CSV reading value through `command.values.clean_number`: (value, "") or (NaN, the reason)."""
    try:
        return clean_number(raw), ""
    except InvalidInput as exc:
        return np.nan, exc.message


def load_readings(path: Path, stations: dict[str, Station]) -> tuple[pd.DataFrame, list[dict], int]:
    """Readings in SI, sorted by time; the quarantined rows; the count of exact duplicates ignored."""
    check_header(path, READINGS_HEADER)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: unreadable CSV: {exc}") from None
    df.columns = [c.strip() for c in df.columns]
    df = df[READINGS_HEADER].copy()
    for c in READINGS_HEADER:
        df[c] = df[c].str.strip()
    df["line"] = np.arange(2, len(df) + 2)
    reason = pd.Series("", index=df.index, dtype=object)

    def flag(mask: pd.Series, text: pd.Series | str) -> None:
        m = mask & (reason == "")
        if m.any():
            reason[m] = text if isinstance(text, str) else text[m]

    has_offset = df["time"].str.contains(_OFFSET_RE, regex=True)
    t = pd.to_datetime(df["time"].where(has_offset), utc=True, format="ISO8601", errors="coerce")
    flag(df["time"] == "", "empty time")
    flag(~has_offset, "time " + df["time"].map(repr) + " has no UTC offset")
    flag(t.isna(), "invalid time " + df["time"].map(repr))
    flag(~df["station_id"].isin(stations.keys()), "unknown station " + df["station_id"].map(repr))
    flag(~df["kind"].isin(READING_KINDS), "unknown kind " + df["kind"].map(repr))
    # value: `command.values.clean_number`, once per distinct text ("empty value" is the CSV's own word)
    checked = {raw: _clean_value(raw) for raw in df["value"].unique()}
    value = df["value"].map({raw: v for raw, (v, _why) in checked.items()}).astype("float64")
    flag(df["value"] == "", "empty value")
    flag(value.isna(), df["value"].map({raw: why for raw, (_v, why) in checked.items()}))
    # unit: look up each distinct (unit, kind) pair once
    factors = np.full(len(df), np.nan)
    for (unit, kind), idx in df.groupby(["unit", "kind"]).groups.items():
        try:
            f, _ = factor_for(unit, kind if kind in READING_KINDS else None)
            factors[df.index.get_indexer(idx)] = f
        except UnitError as exc:
            flag(df.index.isin(idx), str(exc))
    bad = reason != ""
    quarantine = [
        _quarantine_record(path.name, int(row.line), {c: row[c] for c in READINGS_HEADER}, reason[i])
        for i, row in df[bad].iterrows()
    ]
    good = df[~bad]
    out = pd.DataFrame({
        "t": t[~bad].dt.as_unit("ms").astype("int64") if len(good) else pd.Series([], dtype="int64"),
        "station_id": good["station_id"],
        "kind": good["kind"],
        "value": value[~bad] * factors[~bad.to_numpy()],
        "line": good["line"],
    })
    # duplicates: the same station, kind and time. Identical values are ignored; a second, different
    # value for the same instant is a conflict an operator should see, so it is quarantined.
    key = ["station_id", "kind", "t"]
    dup = out.duplicated(key, keep="first")
    exact = out.duplicated(key + ["value"], keep="first")
    conflicts = out[dup & ~exact]
    for _, row in conflicts.iterrows():
        raw = df.loc[df["line"] == row.line, READINGS_HEADER].iloc[0].to_dict()
        quarantine.append(_quarantine_record(path.name, int(row.line), raw,
                                             "conflicting duplicate: another value for the same station, kind and time"))
    duplicates = int(exact.sum())
    out = out[~dup].sort_values(["t", "line"], kind="stable").drop(columns="line").reset_index(drop=True)
    quarantine.sort(key=lambda q: q["line"])
    return out, quarantine, duplicates


def scenario_incident(data: Mapping[str, Any], *, at: int | None, locator: ZoneLocator) -> Incident:
    """One incident of a scenario, an ``incidents.csv`` row or an ``incident`` inject, through the one
    incident validator: `validate_incident(payload, DRILL, now=t)`, as the exercise page's injects.

    ``incident_id`` is the id and is required (a replay must name the same incidents every time);
    ``time`` (ISO 8601 with an offset) is when it was reported, else `at` (the inject's time); the
    status defaults to ``open``. Its zone comes from `locator`. Raises `InvalidInput` naming every
    problem at once (``lat: a number from -90 to 90``): the quarantine's reason.
    """
    payload = {("id" if k == "incident_id" else k): v for k, v in data.items() if k != "time"}
    if isinstance(payload.get("id"), int) and not isinstance(payload["id"], bool):
        payload["id"] = str(payload["id"])  # `incident_id: 7` in YAML
    if payload.get("status") in (None, ""):
        payload["status"] = "open"
    errors: dict[str, str] = {}
    t, raw_time = at, data.get("time")
    if raw_time not in (None, ""):
        try:
            t = parse_time(str(raw_time))
        except (ValueError, OverflowError, OSError):
            errors["time"] = f"invalid time {raw_time!r} (ISO 8601 with an offset)"
    elif t is None:
        errors["time"] = "required"
    if payload.get("id") in (None, ""):
        errors["id"] = "required"
    try:
        inc = validate_incident(payload, DRILL, now=t if t is not None else 0)
    except InvalidInput as exc:
        errors.update(exc.errors)
    if errors:
        raise InvalidInput(errors)
    return inc.model_copy(update={"zone": locator.zone_of(inc.lon, inc.lat)})


def load_incidents(path: Path, locator: ZoneLocator) -> tuple[list[Incident], list[dict]]:
    """The valid rows of an incidents.csv (`scenario_incident`), and the others as quarantine records."""
    check_header(path, INCIDENTS_HEADER)
    incidents: list[Incident] = []
    quarantine: list[dict] = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), 2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            fields = {k: row[k] for k in (*INCIDENTS_HEADER, "status") if k in row}
            try:
                incidents.append(scenario_incident(fields, at=None, locator=locator))
            except InvalidInput as exc:
                quarantine.append(_quarantine_record(path.name, line, row, exc.message))
    incidents.sort(key=lambda i: i.time)
    return incidents, quarantine


def _parse_injects(raw: Any, path: Path, start: int) -> list[Inject]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ScenarioError(f"{path}: `injects` must be a list of {{at, type, ...}}")
    out: list[Inject] = []
    for i, item in enumerate(raw, 1):
        where = f"{path}: inject #{i}"
        if not isinstance(item, dict):
            raise ScenarioError(f"{where}: expected a mapping, got {item!r}")
        if item.get("type") not in INJECT_TYPES:
            raise ScenarioError(f"{where}: `type` must be one of {', '.join(INJECT_TYPES)}, got {item.get('type')!r}")
        try:
            at = start + parse_duration(item.get("at", ""))
        except ValueError as exc:
            raise ScenarioError(f"{where}: `at`: {exc}") from None
        data = {k: v for k, v in item.items() if k not in ("at", "type")}
        need = {"incident": ("incident_id", "category", "lat", "lon"), "reading": ("station_id", "kind", "value", "unit"),
                "resource_status": ("resource_id", "status")}[item["type"]]
        missing = [k for k in need if k not in data]
        if missing:
            raise ScenarioError(f"{where}: {item['type']} inject is missing {', '.join(missing)}")
        out.append(Inject(at=at, type=item["type"], data=data))
    out.sort(key=lambda x: x.at)
    return out


# ---- objectives (docs/drills.md) -----------------------------------------------------------------
def parse_objectives(raw: Any, path: Path) -> list[Objective]:
    """The `objectives:` list, each field checked on its own (a ScenarioError names the file, the
    objective and the field). References to rules, stations and resources are `check_objectives`'."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ScenarioError(f"{path}: `objectives` must be a list of {{id, kind, text, ...}}")
    out: list[Objective] = []
    seen: set[str] = set()
    for i, item in enumerate(raw, 1):
        where = f"{path}: objective #{i}"
        if not isinstance(item, dict):
            raise ScenarioError(f"{where}: expected a mapping, got {item!r}")
        oid = item.get("id")
        if not isinstance(oid, str | int) or isinstance(oid, bool) or not str(oid).strip():
            raise ScenarioError(f"{where}: `id`: required (a short name, e.g. O1)")
        oid = str(oid).strip()
        if oid in seen:
            raise ScenarioError(f"{where}: `id`: {oid!r} is used twice")
        seen.add(oid)
        kind = item.get("kind")
        if kind not in OBJECTIVE_KINDS:
            raise ScenarioError(f"{where} ({oid}): `kind` must be one of {', '.join(OBJECTIVE_KINDS)}, got {kind!r}")
        where = f"{where} ({oid}, {kind})"
        required, optional = OBJECTIVE_FIELDS[kind]
        for key in ("text", *required):
            if item.get(key) in (None, ""):
                raise ScenarioError(f"{where}: `{key}`: required")
        unknown = sorted(set(item) - {"id", "kind", "text", "text_zh", *required, *optional})
        if unknown:
            raise ScenarioError(f"{where}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
        for key in ("text", "text_zh", *(k for k in (*required, *optional) if k != "within")):
            if item.get(key) is not None and not isinstance(item[key], str):
                raise ScenarioError(f"{where}: `{key}`: expected text, got {item[key]!r}")
        within = None
        if "within" in required:
            try:
                within = parse_duration(item["within"])
            except ValueError as exc:
                raise ScenarioError(f"{where}: `within`: {exc}") from None
            if within <= 0:
                raise ScenarioError(f"{where}: `within`: must be longer than 0")
        out.append(Objective(id=oid, kind=kind, text=item["text"].strip(), text_zh=(item.get("text_zh") or "").strip(),
                             rule=item.get("rule"), subject=item.get("subject"), within_ms=within,
                             department=item.get("department"), resource_type=item.get("resource_type"),
                             level=item.get("level")))
    return out


def check_objectives(objectives: list[Objective], path: Path, ruleset: RuleSet, stations: dict[str, Station],
                     resources: list[Resource]) -> None:
    """Every rule, level, station, department and resource type an objective names exists in the
    scenario (a typo would otherwise leave the objective silently "not tested")."""
    rules = {r.id for r in ruleset.rules}
    departments = sorted({x.department for x in resources})
    types = sorted({x.type for x in resources})
    for i, o in enumerate(objectives, 1):
        where = f"{path}: objective #{i} ({o.id}, {o.kind})"
        if o.rule is not None and o.rule not in rules:
            raise ScenarioError(f"{where}: `rule`: no rule {o.rule!r} in the rules (rules: {', '.join(sorted(rules))})")
        if o.department is not None and o.department not in departments:
            raise ScenarioError(f"{where}: `department`: no resource of {o.department!r} in resources.csv "
                                f"(departments: {', '.join(departments)})")
        if o.resource_type is not None and o.resource_type not in types:
            raise ScenarioError(f"{where}: `resource_type`: no resource of type {o.resource_type!r} in resources.csv")
        if o.level is not None and o.level not in ruleset.levels:
            raise ScenarioError(f"{where}: `level`: must be one of {', '.join(ruleset.levels)}, got {o.level!r}")
        if o.kind == "on_scene_before_level":
            st = stations.get(o.subject or "")
            if st is None:
                raise ScenarioError(f"{where}: `subject`: unknown station {o.subject!r}")
            if o.level not in st.thresholds:
                raise ScenarioError(f"{where}: `subject`: station {o.subject} has no {o.level} threshold")


def read_objectives(folder: str | Path) -> list[Objective]:
    """A scenario folder's objectives, read on their own (the after-action report of a run whose
    namespace keeps only the folder's name). Raises ScenarioError."""
    sy = Path(folder) / "scenario.yaml"
    doc = read_yaml(sy)
    return parse_objectives(doc.get("objectives") if isinstance(doc, dict) else None, sy)


def load_scenario(folder: str | Path) -> Scenario:
    folder = Path(folder)
    if not folder.is_dir():
        raise ScenarioError(f"{folder}: not a scenario folder")
    sy = folder / "scenario.yaml"
    doc = read_yaml(sy)
    if not isinstance(doc, dict):
        raise ScenarioError(f"{sy}: expected a mapping with name, start, ...")
    if "start" not in doc:
        raise ScenarioError(f"{sy}: missing `start` (ISO 8601 with an offset)")
    try:
        start = parse_time(doc["start"].isoformat() if hasattr(doc["start"], "isoformat") else str(doc["start"]))
    except ValueError as exc:
        raise ScenarioError(f"{sy}: `start`: {exc}") from None
    tz = doc.get("timezone")
    if tz:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScenarioError(f"{sy}: unknown timezone {tz!r}") from None
    tick_ms = 5 * 60_000
    if doc.get("tick"):
        try:
            tick_ms = parse_duration(doc["tick"])
        except ValueError as exc:
            raise ScenarioError(f"{sy}: `tick`: {exc}") from None
    if tick_ms < MIN_TICK_MS:  # a zero tick would make a drill's list of ticks grow without end
        raise ScenarioError(f"{sy}: `tick` must be at least {MIN_TICK_MS // 1000}s")
    zones = load_zones(resolve(folder, doc, "zones", "zones.geojson"))
    stations = load_stations(resolve(folder, doc, "stations", "stations.geojson"), zones)
    resources = load_resources(resolve(folder, doc, "resources", "resources.csv"))
    ruleset, rules_doc = load_rules(resolve(folder, doc, "rules", "rules.yaml"))
    readings, quarantine, dups = load_readings(resolve(folder, doc, "readings", "readings.csv"), stations)
    locator = ZoneLocator(zones)
    incidents: list[Incident] = []
    inc_path = folder / str(doc.get("incidents") or "incidents.csv")
    if inc_path.exists():
        incidents, q2 = load_incidents(inc_path, locator)
        quarantine += q2
    injects = _parse_injects(doc.get("injects"), sy, start)
    actions = parse_actions(doc.get("actions"), sy, start)
    objectives = parse_objectives(doc.get("objectives"), sy)
    check_objectives(objectives, sy, ruleset, stations, resources)
    basemap = None
    rivers = (folder / str(doc["rivers"])).resolve() if doc.get("rivers") else folder / "rivers.geojson"
    if doc.get("rivers") or rivers.exists():
        basemap = {"type": "FeatureCollection", "features": features(rivers)}
    roads = load_roads(resolve(folder, doc, "roads", "roads.geojson", required=False))
    return Scenario(folder=folder, name=str(doc.get("name") or folder.name), description=str(doc.get("description") or ""),
                    description_zh=str(doc.get("description_zh") or ""), start=start, timezone=tz,
                    stations=stations, zones=zones, resources=resources, ruleset=ruleset, rules_doc=rules_doc,
                    readings=readings, incidents=incidents, injects=injects, quarantine=quarantine,
                    duplicates=dups, tick_ms=tick_ms, basemap=basemap, roads=roads, actions=actions,
                    objectives=objectives)


def inject_incident(data: Mapping[str, Any], at: int, locator: ZoneLocator) -> Incident:
    """An ``incident`` inject as an Incident (`scenario_incident`; reported at the inject's time
    unless it gives a `time`). Text is taken without surrounding blanks, as the form and the CSV do.
    Raises InvalidInput."""
    fields = {k: v.strip() if isinstance(v, str) else v for k, v in data.items()}
    return scenario_incident(fields, at=at, locator=locator)


__all__ = ["Scenario", "ScenarioError", "Inject", "load_scenario", "scenario_incident", "inject_incident",
           "parse_objectives", "read_objectives"]
