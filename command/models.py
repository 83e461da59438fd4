"""Typed domain models.

Everything crossing an edge (files, Redis hashes, HTTP) is a pydantic model, validated once there.
`Reading` is the hot-path exception: a slotted dataclass, because the engine handles tens of
thousands a second and they were already validated by the feed that wrote them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

READING_KINDS = ("water_level", "rainfall", "wind_speed", "discharge")


class ResourceStatus(StrEnum):
    available = "available"
    dispatched = "dispatched"
    on_scene = "on_scene"
    out_of_service = "out_of_service"


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Station(Model):
    id: str
    name: str = ""
    name_zh: str = ""
    kind: str
    lon: float
    lat: float
    zone: str | None = None
    # Level name -> bound, already in the SI unit of `kind` (converted on load).
    thresholds: dict[str, float] = Field(default_factory=dict)
    unit: str = ""  # the SI unit of this station's readings


class Zone(Model):
    id: str
    name: str = ""
    name_zh: str = ""
    risk: str | None = None
    geometry: dict[str, Any]  # GeoJSON Polygon or MultiPolygon

    def centroid(self) -> tuple[float, float]:
        from shapely.geometry import shape

        c = shape(self.geometry).centroid
        return c.x, c.y


class Resource(Model):
    id: str
    department: str
    type: str
    name: str = ""
    lat: float
    lon: float
    status: ResourceStatus = ResourceStatus.available
    capacity: float | None = None


class Incident(Model):
    id: str
    time: int  # epoch ms
    category: str
    lat: float
    lon: float
    severity: str = ""
    description: str = ""
    status: Literal["open", "closed"] = "open"
    zone: str | None = None  # the zone containing it, filled in on ingest


@dataclass(slots=True)
class Reading:
    station_id: str
    kind: str
    t: int  # epoch ms
    value: float  # SI


class Alert(Model):
    fingerprint: str
    rule: str
    rule_kind: str
    subject: str  # station, zone or incident id
    subject_type: Literal["station", "incident", "zone"] = "station"
    status: Literal["open", "resolved"] = "open"
    level: str  # current level while open; the last level held once resolved
    peak_level: str
    value: float | None = None
    peak_value: float | None = None
    unit: str = ""
    first_breach_at: int  # epoch ms the value first crossed (start of the `for` wait)
    opened_at: int
    updated_at: int
    resolved_at: int | None = None
    lon: float | None = None
    lat: float | None = None
    zone: str | None = None
    trend_per_h: float | None = None  # rate of change of the rule's value per hour, over the last hour
    next_level: str | None = None
    next_level_eta: int | None = None  # epoch ms when `next_level`'s bound is crossed at the current trend
    message: str = ""


class RecommendedResource(Model):
    resource_id: str
    type: str
    department: str
    name: str = ""
    distance_km: float
    reason: str


class Recommendation(Model):
    fingerprint: str  # the alert's
    rule: str
    subject: str
    level: str
    created_at: int
    items: list[RecommendedResource]
    # Requested types for which fewer available resources exist than asked: {type, wanted, found}.
    shortfall: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def resource_ids(self) -> list[str]:
        return [i.resource_id for i in self.items]
