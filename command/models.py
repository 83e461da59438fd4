"""Typed domain models.

Everything crossing an edge (files, Redis hashes, HTTP) is a pydantic model, validated once there.
`Reading` is the hot-path exception: a slotted dataclass, because the engine handles tens of
thousands a second and they were already validated by the feed that wrote them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    # Area codes naming this zone in other agencies' warnings (e.g. {"UGC": ["ORZ004"]}), so a
    # warning that gives only a geocode (no polygon) can still be matched to the zone.
    geocodes: dict[str, list[str]] = Field(default_factory=dict)

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


class Person(Model):
    """Someone's contact details: personal data, graded secret (sample_data/classification.yaml).
    Validated strictly where it comes in (command/ops/people.py)."""

    name: str = ""
    phone: str = ""


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
    reporter: Person | None = None  # who called it in (secret); never on the engine's input stream

    @field_validator("reporter", mode="before")
    @classmethod
    def _legacy_reporter(cls, v: Any) -> Any:
        # records written before contacts were taken kept the submitting account's name here
        return None if isinstance(v, str) else v


MsgType = Literal["Alert", "Update", "Cancel", "Ack", "Error"]  # CAP 1.2 msgType


class ExternalWarning(Model):
    """A warning imported from another agency (NWS, UK EA, any CAP 1.2 feed). Times are epoch ms.

    `severity`, `urgency` and `certainty` use the CAP 1.2 words (severity: Extreme, Severe, Moderate,
    Minor, Unknown). `geometry` is GeoJSON (Polygon, MultiPolygon, Point or GeometryCollection) or
    None when the area is given only by `geocodes`. `references` are the ids of earlier messages
    this one updates or cancels.
    """

    id: str
    source: str
    sender: str = ""
    sender_name: str = ""
    event: str = ""
    headline: str = ""
    description: str = ""
    instruction: str = ""
    msg_type: MsgType = "Alert"
    status: str = "Actual"
    category: str = ""
    severity: str = "Unknown"
    urgency: str = "Unknown"
    certainty: str = "Unknown"
    sent: int
    onset: int | None = None
    expires: int | None = None
    ends: int | None = None
    area_desc: str = ""
    geometry: dict[str, Any] | None = None
    geocodes: dict[str, list[str]] = Field(default_factory=dict)
    references: list[str] = Field(default_factory=list)
    language: str = ""
    web: str = ""

    @property
    def until(self) -> int | None:
        """When the warning stops applying: the end of the event if given, else the message's expiry."""
        if self.ends is not None and self.expires is not None:
            return max(self.ends, self.expires)
        return self.ends if self.ends is not None else self.expires


@dataclass(slots=True)
class Reading:
    station_id: str
    kind: str
    t: int  # epoch ms
    value: float  # SI


class RecommendedResource(Model):
    resource_id: str
    type: str
    department: str
    name: str = ""
    distance_km: float  # the straight line
    reason: str
    # Dispatch by deadline (docs/dispatch.md). Times are epoch ms here and in Redis, ISO 8601 with
    # the scenario's offset in recommendations.jsonl.
    travel_min: float | None = None  # leaving now, by road (or the straight line x 1.3 off the network)
    setup_min: float | None = None  # the type's set-up time on scene
    route_km: float | None = None  # the route driven, legs to and from the road included
    arrive_at: int | None = None  # there and set up (working): now + travel + set-up
    leave_by: int | None = None  # the latest departure that is working by the deadline (None: no deadline)
    deadline: int | None = None  # the alert's deadline
    margin_min: int | None = None  # deadline - arrive_at, whole minutes (negative when late)
    late_min: int = 0  # minutes working after the deadline (0 when on time)
    via: list[str] = Field(default_factory=list)  # road names in the order driven
    by_road: bool | None = None  # False: estimated from the straight line (no road network there)


class Recommendation(Model):
    fingerprint: str  # the alert's
    rule: str
    subject: str
    level: str
    created_at: int
    items: list[RecommendedResource]
    # Requested types for which fewer available resources exist than asked: {type, wanted, found},
    # with `unreachable` (available units no open road takes there) when there are any.
    shortfall: list[dict[str, Any]] = Field(default_factory=list)
    # The alert's deadline (epoch ms): when it is projected to reach `deadline_level`
    # (basis `next_level`), or opened (rose) + the rule's respond_within (basis `respond_within`).
    deadline: int | None = None
    deadline_basis: str | None = None
    deadline_level: str | None = None
    # Why the recommendation is what it is, beyond each item's own reason: units held for other
    # alerts, no unit on time, units that cannot get there; and, for a re-plan, what changed it.
    reason: str = ""
    # Units this alert would have had on its own, held for another alert: {resource_id, name, type,
    # for_fingerprint, for_subject, for_level, for_deadline}.
    held: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def resource_ids(self) -> list[str]:
        return [i.resource_id for i in self.items]


# ---- dispatch and department tasks ----------------------------------------------------------------
TASK_STATUSES = ("assigned", "acknowledged", "en_route", "on_scene", "need_support", "completed", "reopened")
# Statuses only the system sets: `assigned` by a dispatch, `reopened` by the verification of a completed
# task (command/ops/verify.py), never by a department's report.
TASK_SYSTEM_STATUSES = ("assigned", "reopened")
# Which status may follow which: an update implies acknowledgement; `completed` is final for the
# department (only the verification reopens it), and a reopened task is worked on again.
TASK_NEXT: dict[str, frozenset[str]] = {
    "assigned": frozenset({"acknowledged", "en_route", "on_scene", "need_support", "completed"}),
    "acknowledged": frozenset({"acknowledged", "en_route", "on_scene", "need_support", "completed"}),
    "en_route": frozenset({"en_route", "on_scene", "need_support", "completed"}),
    "on_scene": frozenset({"on_scene", "need_support", "completed"}),
    "need_support": frozenset({"need_support", "en_route", "on_scene", "completed"}),
    "completed": frozenset(),
    "reopened": frozenset({"acknowledged", "en_route", "on_scene", "need_support", "completed"}),
}
# What a task's status means for the resources it carries.
TASK_RESOURCE_STATUS = {"en_route": ResourceStatus.dispatched, "on_scene": ResourceStatus.on_scene,
                        "need_support": ResourceStatus.on_scene, "completed": ResourceStatus.available}


class StatusUpdate(Model):
    status: str
    note: str = ""
    people_assisted: int | None = None
    lat: float | None = None
    lon: float | None = None
    by: str
    at: int  # namespace clock, epoch ms


class Task(Model):
    id: str
    department: str
    dispatch_id: str
    fingerprint: str
    subject: str
    rule: str
    level: str
    lat: float | None = None
    lon: float | None = None
    resource_ids: list[str]
    status: str = "assigned"
    created_at: int
    updated_at: int
    ack_deadline: int | None = None
    flagged: str | None = None  # why the task needs the command centre's attention (e.g. no acknowledgement)
    history: list[StatusUpdate] = Field(default_factory=list)
    people: list[Person] = Field(default_factory=list)  # people assisted, by name and phone (secret)


class Dispatch(Model):
    id: str
    fingerprint: str
    level: str
    subject: str
    rule: str
    resource_ids: list[str]
    departments: list[str]
    task_ids: list[str]
    operator: str
    created_at: int
    note: str = ""
