"""Data classification: the ONE place that decides what a viewer gets of a dataset or a field.

Every dataset and every sensitive field is graded public, internal or secret (公开, 内部, 秘密) in one
file a data officer reads and edits (`sample_data/classification.yaml`, or `Settings.classification_file`
/ ``ECD_CLASSIFICATION_FILE``). `decide(clearance, dataset, field)` answers ``keep``, ``mask`` or
``drop``; nothing else in the code grades, masks or drops (tests/test_classification.py greps for it).

Readers (command/publish/) never apply the rule themselves: they hand each record to a `Redactor`
made for the viewer, which calls `decide` for the dataset and for each classified field, masks
(`138****8000`, `王*`) or drops, and notes every secret value it kept. `Redactor.audit` then writes
one `audit.record_read` entry for the whole view (who, which fields, which records), not one per
field; an identical view of the same viewer within `READ_AUDIT_WINDOW_MS` is not audited again
(the operator map redraws every few seconds).

Who is the viewer: `viewer_of(user)` for a signed-in user (its `clearance` from the users file), an
API token (`read_internal`: internal, else public) or nobody (`PUBLIC`, the /public/ routes).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import redis
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from command.errors import InvalidInput
from command.keys import Keys
from command.trust.auth import CLEARANCES

log = logging.getLogger(__name__)

LEVELS = CLEARANCES  # public, internal, secret: a clearance opens its own level and those below
Level = Literal["public", "internal", "secret"]
Action = Literal["keep", "mask", "drop"]
MASKS = ("phone", "name")
RANK = {lv: i for i, lv in enumerate(LEVELS)}
# The datasets the readers hand to `Redactor`: the file must grade each of them.
REQUIRED_DATASETS = ("readings", "stations", "forecasts", "zones", "alerts", "warnings", "incidents", "resources",
                     "recommendations", "dispatches", "tasks", "alert_notes", "events", "deadletter", "audit")
READ_AUDIT_WINDOW_MS = 10 * 60_000
_FREQ_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|min|h|d)")
_FREQ_UNIT_MS = {"s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_PATH_RE = re.compile(r"[a-z_]+(\[\])?(\.[a-z_]+(\[\])?)*")


class ClassificationError(InvalidInput):
    """A classification file that cannot be used, or a dataset it does not grade; the message says why."""


# ---- the file ----------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _bilingual(v: Any) -> Any:
    return {"en": v, "zh": v} if isinstance(v, str) else v


class Words(_Strict):
    en: str
    zh: str

    @field_validator("en", "zh")
    @classmethod
    def _filled(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v


class LevelInfo(_Strict):
    en: str
    zh: str
    description: Words
    audit_reads: bool = False


class FieldRule(_Strict):
    classification: Level
    mask: Literal["phone", "name"] | None = None  # None: left out when not cleared


class Dataset(_Strict):
    id: str
    title: Words
    owner: str
    source: Words
    format: str
    frequency: str | None = None
    classification: Level
    fields: dict[str, FieldRule] = {}

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, v: Any) -> Any:
        if isinstance(v, dict):
            v = dict(v)
            v["source"] = _bilingual(v.get("source"))
            v["fields"] = {k: ({"classification": f} if isinstance(f, str) else f)
                           for k, f in (v.get("fields") or {}).items()}
            if v.get("frequency") in ("none", "", None):
                v["frequency"] = None
        return v

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, v: str | None) -> str | None:
        if v is not None and not _FREQ_RE.fullmatch(str(v).strip()):
            raise ValueError("a duration such as 15m, 6h, 1d, or none")
        return v

    @field_validator("fields")
    @classmethod
    def _paths(cls, v: dict[str, FieldRule]) -> dict[str, FieldRule]:
        for path in v:
            if not _PATH_RE.fullmatch(path):
                raise ValueError(f"field {path!r}: names of lower-case letters and _, joined by '.', "
                                 "a list marked []")
        return v

    @property
    def frequency_ms(self) -> int | None:
        if self.frequency is None:
            return None
        m = _FREQ_RE.fullmatch(self.frequency.strip())
        assert m is not None
        return int(float(m.group(1)) * _FREQ_UNIT_MS[m.group(2)])

    def level_of(self, path: str | None) -> str:
        """A field's effective level: its own, or its dataset's when that is higher."""
        rule = self.fields.get(path) if path else None
        if rule is None:
            return self.classification
        return max(rule.classification, self.classification, key=RANK.__getitem__)


class Policy(_Strict):
    levels: dict[str, LevelInfo]
    masks: dict[str, Words]
    overdue_after: float = 1.5
    datasets: dict[str, Dataset]

    @model_validator(mode="before")
    @classmethod
    def _ids(cls, v: Any) -> Any:
        if isinstance(v, dict) and isinstance(v.get("datasets"), dict):
            v = {**v, "datasets": {k: {**(d or {}), "id": k} for k, d in v["datasets"].items()}}
        return v

    @model_validator(mode="after")
    def _complete(self) -> Policy:
        if tuple(self.levels) != LEVELS:
            raise ValueError(f"levels must be {', '.join(LEVELS)}, in that order")
        if set(self.masks) != set(MASKS):
            raise ValueError(f"masks must describe {', '.join(MASKS)}")
        missing = [d for d in REQUIRED_DATASETS if d not in self.datasets]
        if missing:
            raise ValueError(f"datasets not graded: {', '.join(missing)}")
        if self.overdue_after < 1:
            raise ValueError("overdue_after must be at least 1")
        return self

    def dataset(self, dataset_id: str) -> Dataset:
        d = self.datasets.get(dataset_id)
        if d is None:
            raise ClassificationError(f"dataset {dataset_id!r} is not in the classification file", field="dataset")
        return d

    def audited(self, level: str) -> bool:
        return self.levels[level].audit_reads


def load_policy(path: Path) -> Policy:
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return Policy.model_validate(doc)
    except (OSError, yaml.YAMLError) as exc:
        raise ClassificationError(f"{path}: {exc}") from None
    except ValidationError as exc:
        e = exc.errors()[0]
        where = ".".join(str(x) for x in e["loc"])
        raise ClassificationError(f"{path}: {where}: {e['msg']}") from None


_lock = threading.Lock()
_loaded: dict[str, Any] = {"path": None, "stamp": None, "policy": None}


def policy_file() -> Path:
    """The classification file of the settings (`ECD_CLASSIFICATION_FILE`, else the sample's)."""
    env = os.environ.get("ECD_CLASSIFICATION_FILE")
    if env:
        return Path(env)
    from command.config import Settings

    return Settings.model_fields["classification_file"].default


def policy(path: Path | None = None) -> Policy:
    """The classification in force, read again when its file changes. A file that became invalid
    keeps the last good one in force (and logs why); one that never loaded raises."""
    path = Path(path or policy_file())
    try:
        st = path.stat()
        stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    with _lock:
        if _loaded["path"] == path and _loaded["stamp"] == stamp and _loaded["policy"] is not None:
            return _loaded["policy"]
        try:
            pol = load_policy(path)
        except ClassificationError:
            if _loaded["path"] == path and _loaded["policy"] is not None:
                log.exception("classification file %s is invalid: the last good one stays in force", path)
                return _loaded["policy"]
            raise
        _loaded.update(path=path, stamp=stamp, policy=pol)
        return pol


# ---- THE decision ------------------------------------------------------------------------------------
def decide(clearance: str, dataset: str, field: str | None = None, pol: Policy | None = None) -> Action:
    """What a viewer of `clearance` gets of `dataset` (field None) or of one of its fields:

    - ``keep``: cleared for it (the clearance is at least the field's level, which is at least its
      dataset's);
    - ``mask``: not cleared for the field, but for its dataset, and the field names a mask;
    - ``drop``: left out.

    An unknown clearance is cleared for nothing above public."""
    d = (pol or policy()).dataset(dataset)
    have = RANK.get(clearance, 0)
    if have >= RANK[d.level_of(field)]:
        return "keep"
    rule = d.fields.get(field) if field else None
    if rule is not None and rule.mask and have >= RANK[d.classification]:
        return "mask"
    return "drop"


def _mask(kind: str, value: Any) -> Any:
    if value is None or value == "":
        return value
    s = str(value)
    if kind == "phone":
        return f"{s[:3]}****{s[-4:]}" if len(s) >= 8 else "****"
    return f"{s[:1]}*"  # name


# ---- who is looking ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Viewer:
    who: str  # the audit's `who`: a user name, `token:<name>`, `public`
    clearance: str = "public"
    department: str = ""


PUBLIC = Viewer("public", "public")
INTERNAL = Viewer("system", "internal")  # the readers' default: never a secret, so nothing to audit


def viewer_of(user: Mapping[str, Any] | None) -> Viewer:
    """The viewer a signed-in user (session or HTTP Basic), an API token or nobody is."""
    if not user:
        return PUBLIC
    who = str(user.get("username") or "-")
    if user.get("role") == "token":
        clearance = "internal" if "read_internal" in str(user.get("scopes", "")).split() else "public"
    else:
        clearance = str(user.get("clearance", ""))
        clearance = clearance if clearance in RANK else "public"
    return Viewer(who, clearance, str(user.get("department", "")))


# ---- applying it to records --------------------------------------------------------------------------
@dataclass
class Redactor:
    """Applies `decide` to the records of one view for one viewer, and remembers the secret values
    it showed, for one audit entry (`audit`)."""

    viewer: Viewer
    pol: Policy = field(default_factory=policy)
    revealed: dict[str, set[str]] = field(default_factory=dict)  # "dataset.field" -> record ids

    def allowed(self, dataset: str) -> bool:
        return decide(self.viewer.clearance, dataset, None, self.pol) == "keep"

    def action(self, dataset: str, path: str | None = None) -> Action:
        """What this viewer gets of a dataset or one of its fields (`decide`)."""
        return decide(self.viewer.clearance, dataset, path, self.pol)

    def record(self, dataset: str, rec: Mapping[str, Any], rid: Any = "") -> dict[str, Any] | None:
        """A copy of `rec` with every classified field kept, masked or dropped; None when the viewer
        is not cleared for the dataset."""
        if not self.allowed(dataset):
            return None
        d = self.pol.dataset(dataset)
        # a copy deep enough for the fields it may change: nested paths need a deep one
        out = copy.deepcopy(dict(rec)) if any("." in p or "[]" in p for p in d.fields) else dict(rec)
        for path in d.fields:
            act = decide(self.viewer.clearance, dataset, path, self.pol)
            audited = self.pol.audited(d.level_of(path))
            self._apply(out, path.split("."), act, d.fields[path].mask, f"{dataset}.{path}", str(rid), audited)
        return out

    def records(self, dataset: str, recs: Sequence[Mapping[str, Any]], id_field: str = "id") -> list[dict[str, Any]]:
        out = []
        for rec in recs:
            red = self.record(dataset, rec, rec.get(id_field, ""))
            if red is not None:
                out.append(red)
        return out

    def model(self, dataset: str, m: BaseModel, rid: Any = "") -> Any:
        """A pydantic model redacted and validated again as its own type; None when not cleared."""
        red = self.record(dataset, m.model_dump(mode="json"), rid or getattr(m, "id", ""))
        return None if red is None else type(m).model_validate(red)

    def _apply(self, obj: Any, segs: list[str], act: str, kind: str | None, name: str, rid: str,
               audited: bool) -> None:
        if not isinstance(obj, dict):
            return
        seg, rest = segs[0], segs[1:]
        is_list = seg.endswith("[]")
        key = seg[:-2] if is_list else seg
        if key not in obj:
            return
        value = obj[key]
        if rest:
            for child in (value if is_list and isinstance(value, list) else [value]):
                self._apply(child, rest, act, kind, name, rid, audited)
            return
        if act == "drop":
            del obj[key]
        elif act == "mask":
            obj[key] = [_mask(kind or "", v) for v in value] if is_list and isinstance(value, list) \
                else _mask(kind or "", value)
        elif audited and value not in (None, "", []):
            self.revealed.setdefault(name, set()).add(rid)

    def audit(self, r: redis.Redis, keys: Keys, view: str, *, at: int | None = None) -> bool:
        """One audit entry for the secret values this view showed (nothing when none). The same view
        of the same records by the same viewer within READ_AUDIT_WINDOW_MS is not audited again.
        True when an entry was written."""
        if not self.revealed:
            return False
        from command.trust import audit

        what = ",".join(sorted(self.revealed))
        records = sorted({rid for ids in self.revealed.values() for rid in ids})
        digest = hashlib.sha256(orjson.dumps([self.viewer.who, view, what, records])).hexdigest()[:32]
        if not r.set(keys.read_audited(digest), 1, nx=True, px=READ_AUDIT_WINDOW_MS):
            self.revealed.clear()
            return False
        audit.record_read(r, keys, self.viewer.who, what,
                          {"view": view, "records": records[:200], "count": len(records)}, at=at)
        self.revealed.clear()
        return True
