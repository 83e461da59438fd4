"""A scenario's reference data: zones, stations, resources, rules and roads, and the file helpers
every part of a scenario folder is read with (the contract in docs/scenarios.md).

Anything wrong stops with a `ScenarioError` naming the file and, where there is one, the line.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Literal, overload

import yaml
from pydantic import ValidationError
from shapely.geometry import shape
from shapely.validation import explain_validity

from command.config import SAMPLE_DATA
from command.errors import InvalidInput
from command.geo import ZoneLocator
from command.models import READING_KINDS, Resource, Station, Zone
from command.planning.roads import roads_document
from command.rules import RuleError, RuleSet, parse_rules
from command.units import KIND_UNITS, UnitError, factor_for

RESOURCES_HEADER = ["id", "department", "type", "name", "lat", "lon", "status"]


class ScenarioError(InvalidInput):
    """A scenario folder that cannot be replayed. The message names the file (and line)."""


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{where}: invalid YAML: {problem}") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ScenarioError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise ScenarioError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None


def check_header(path: Path, required: list[str]) -> list[str]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), None)
    except FileNotFoundError:
        raise ScenarioError(f"{path}: file not found") from None
    if not header:
        raise ScenarioError(f"{path}:1: empty file, expected the header {','.join(required)}")
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise ScenarioError(f"{path}:1: bad header {','.join(header)!r}: missing column(s) "
                            f"{', '.join(missing)} (expected {','.join(required)})")
    return header


@overload
def resolve(folder: Path, doc: dict, key: str, default_name: str, required: Literal[True] = ...) -> Path: ...
@overload
def resolve(folder: Path, doc: dict, key: str, default_name: str, required: bool) -> Path | None: ...
def resolve(folder: Path, doc: dict, key: str, default_name: str, required: bool = True) -> Path | None:
    """A path from scenario.yaml (relative to the folder); else the folder's file; else sample_data's."""
    if doc.get(key):
        return (folder / str(doc[key])).resolve()
    for candidate in (folder / default_name, SAMPLE_DATA / default_name):
        if candidate.exists():
            return candidate
    if required:
        raise ScenarioError(f"{folder / default_name}: file not found (and no `{key}` in scenario.yaml)")
    return None


def features(path: Path) -> list[dict]:
    doc = read_json(path)
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise ScenarioError(f"{path}: expected a GeoJSON FeatureCollection")
    return doc["features"]


def load_zones(path: Path) -> dict[str, Zone]:
    zones: dict[str, Zone] = {}
    for i, feat in enumerate(features(path), 1):
        where = f"{path}: feature #{i}"
        props = feat.get("properties") or {}
        geom = feat.get("geometry")
        if not props.get("id"):
            raise ScenarioError(f"{where}: missing property `id`")
        where = f"{path}: zone {props['id']!r} (feature #{i})"
        if not isinstance(geom, dict) or geom.get("type") not in ("Polygon", "MultiPolygon"):
            raise ScenarioError(f"{where}: geometry must be a Polygon or MultiPolygon")
        try:
            shp = shape(geom)
        except Exception as exc:  # shapely raises several types for malformed coordinates
            raise ScenarioError(f"{where}: invalid geometry: {exc}") from None
        if shp.is_empty or not shp.is_valid:
            raise ScenarioError(f"{where}: invalid geometry: {explain_validity(shp)}")
        if props["id"] in zones:
            raise ScenarioError(f"{where}: duplicate zone id")
        zones[props["id"]] = Zone(id=str(props["id"]), name=str(props.get("name") or ""),
                                  name_zh=str(props.get("name_zh") or ""), risk=props.get("risk"), geometry=geom,
                                  geocodes=_geocodes(props.get("geocodes"), where))
    return zones


def _geocodes(raw: Any, where: str) -> dict[str, list[str]]:
    """Optional zone property `geocodes`: {scheme: code or [codes]} (e.g. {UGC: [ORZ004]})."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: `geocodes` must be an object of scheme to code(s)")
    return {str(k): [str(c) for c in (v if isinstance(v, list) else [v])] for k, v in raw.items()}


def load_stations(path: Path, zones: dict[str, Zone]) -> dict[str, Station]:
    locator = ZoneLocator(zones)
    stations: dict[str, Station] = {}
    for i, feat in enumerate(features(path), 1):
        props = feat.get("properties") or {}
        geom = feat.get("geometry") or {}
        sid = props.get("id")
        where = f"{path}: station {sid!r} (feature #{i})"
        if not sid:
            raise ScenarioError(f"{path}: feature #{i}: missing property `id`")
        coords = geom.get("coordinates") if isinstance(geom, dict) else None
        if geom.get("type") != "Point" or not isinstance(coords, list) or len(coords) < 2:
            raise ScenarioError(f"{where}: geometry must be a Point [lon, lat]")
        try:
            lon, lat = float(coords[0]), float(coords[1])
        except (TypeError, ValueError):
            raise ScenarioError(f"{where}: invalid coordinates {coords!r}") from None
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise ScenarioError(f"{where}: coordinates {coords!r} out of range (expected [lon, lat])")
        kind = props.get("kind")
        if kind not in READING_KINDS:
            raise ScenarioError(f"{where}: `kind` must be one of {', '.join(READING_KINDS)}, got {kind!r}")
        thresholds: dict[str, float] = {}
        raw_th = props.get("thresholds") or {}
        if raw_th:
            if not isinstance(raw_th, dict):
                raise ScenarioError(f"{where}: `thresholds` must be an object of level to value")
            unit = str(raw_th.get("unit") or KIND_UNITS[kind])
            try:
                factor, _ = factor_for(unit, kind)
            except UnitError as exc:
                raise ScenarioError(f"{where}: thresholds: {exc}") from None
            for lv, v in raw_th.items():
                if lv == "unit":
                    continue
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise ScenarioError(f"{where}: threshold {lv!r} must be a number, got {v!r}")
                thresholds[lv] = round(float(v) * factor, 6)
        zone = props.get("zone")
        if zone is not None and zone not in zones:
            raise ScenarioError(f"{where}: unknown zone {zone!r}")
        if zone is None:
            zone = locator.zone_of(lon, lat)
        if sid in stations:
            raise ScenarioError(f"{where}: duplicate station id")
        stations[sid] = Station(id=str(sid), name=str(props.get("name") or ""), name_zh=str(props.get("name_zh") or ""),
                                kind=kind, lon=lon, lat=lat, zone=zone, thresholds=thresholds, unit=KIND_UNITS[kind])
    return stations


def load_resources(path: Path) -> list[Resource]:
    check_header(path, RESOURCES_HEADER)
    out: list[Resource] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), 2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            if not row.get("status"):
                row["status"] = "available"
            if not row.get("capacity"):
                row.pop("capacity", None)
            try:
                res = Resource.model_validate(row)
            except ValidationError as exc:
                err = exc.errors()[0]
                raise ScenarioError(f"{path}:{line}: resource {row.get('id')!r}: "
                                    f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
            if res.id in seen:
                raise ScenarioError(f"{path}:{line}: duplicate resource id {res.id!r}")
            seen.add(res.id)
            out.append(res)
    return out


def load_rules(path: Path) -> tuple[RuleSet, dict]:
    doc = read_yaml(path)
    try:
        return parse_rules(doc, source=str(path)), doc
    except RuleError as exc:
        raise ScenarioError(str(exc)) from None



def load_roads(path: Path | None) -> dict[str, Any] | None:
    """The road network file (`roads:` in scenario.yaml, else roads.geojson beside it, else the
    sample's), validated: a `ScenarioError` names the file and the feature (docs/dispatch.md)."""
    if path is None:
        return None
    try:
        return roads_document(read_json(path), str(path))
    except InvalidInput as exc:
        if isinstance(exc, ScenarioError):
            raise
        raise ScenarioError(exc.message) from None
