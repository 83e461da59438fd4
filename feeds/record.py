"""Record a live event as a drill: run live sources for a while, then write what they delivered as a
scenario folder (the contract in docs/scenarios.md) that `python -m command replay` reads back.

    python -m command record --sources usgs,ea --hours 6 --out sample_data/scenarios/my_event

The sources poll into a namespace of their own (``record-<id>``, deleted afterwards unless kept),
so a recording never touches live data. The folder gets:

- ``readings.csv``: every reading the feeds took (each once), in SI units, times in UTC;
- ``stations.geojson``: the stations the feeds described, with their thresholds;
- ``zones.geojson`` (from ``--zones``, else empty), ``resources.csv`` (from ``--resources``, else
  only the header), ``rules.yaml`` (``--rules``, else the sample rules), ``scenario.yaml``;
- ``warnings.jsonl`` and ``forecasts.json``: the external warnings and forecast runs received.
  The scenario format has no place for them yet, so a replay does not play them back.
"""

from __future__ import annotations

import csv
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import redis
import yaml

from command.keys import Keys
from command.models import Station, Zone
from command.scenarios.load import READINGS_HEADER
from command.scenarios.namespaces import delete_namespace
from command.scenarios.reference import RESOURCES_HEADER
from command.streams import ensure_group, read_stream, shard_count
from command.timeutil import now_ms, to_iso

from .runner import FeedRunner, prepare_namespace
from .source import Source

RECORD_GROUP = "record"


@dataclass
class RecordResult:
    namespace: str
    folder: Path
    readings: int
    stations: int
    warnings: int


def record(r: redis.Redis, sources: list[Source], *, hours: float, out: Path, rules: Path | None = None,
           zones: Path | None = None, resources: Path | None = None, name: str | None = None,
           max_polls: int | None = None, stop: threading.Event | None = None,
           transport: httpx.BaseTransport | None = None, clock: Callable[[], int] = now_ms,
           sleep: Callable[[float], None] = time.sleep, namespace: str | None = None,
           keep: bool = False) -> RecordResult:
    """Poll `sources` for `hours` (or `max_polls` polls each), then write the scenario folder."""
    keys = Keys(namespace or f"record-{uuid.uuid4().hex[:8]}")
    prepare_namespace(r, keys, rules=rules, zones=zones, mode="record")
    runner = FeedRunner(r, keys, sources, transport=transport, clock=clock, sleep=sleep)
    for shard in range(shard_count(r, keys)):
        # a consumer group of our own that never acknowledges: an engine trimming the input streams
        # (command/streams.py trim_acknowledged) then keeps every entry the recording still reads
        ensure_group(r, keys.shard_stream(shard), group=RECORD_GROUP)
    stop = stop or threading.Event()
    timer = threading.Timer(hours * 3600, stop.set)
    timer.daemon = True
    timer.start()
    try:
        runner.run(stop, max_polls=max_polls)
    finally:
        timer.cancel()
        runner.close()
    started = clock()
    desc = (f"Recorded from {', '.join(s.name for s in sources)} "
            f"({to_iso(started)}, {hours:g} h requested).")
    res = write_scenario(r, keys, Path(out), name=name or f"recorded-{to_iso(started)[:10]}",
                         description=desc, resources=resources)
    if not keep:
        delete_namespace(r, keys)
    return res


def _readings(r: redis.Redis, keys: Keys) -> list[tuple[int, str, str, float]]:
    rows = []
    for s in range(shard_count(r, keys)):
        for _eid, f in read_stream(r, keys.shard_stream(s)):
            raw = f.get(b"r")
            if raw is not None:
                sid, kind, t, value = orjson.loads(raw)
                rows.append((int(t), sid, kind, float(value)))
    rows.sort()
    return rows


def write_scenario(r: redis.Redis, keys: Keys, out: Path, *, name: str, description: str = "",
                   resources: Path | None = None) -> RecordResult:
    """Write the namespace's stations, zones, rules and readings as a scenario folder."""
    from command.units import KIND_UNITS

    out.mkdir(parents=True, exist_ok=True)
    stations = [Station.model_validate_json(v) for v in r.hvals(keys.stations)]
    stations.sort(key=lambda s: s.id)
    zones = [Zone.model_validate_json(v) for v in r.hvals(keys.zones)]
    zone_ids = {z.id for z in zones}
    rows = _readings(r, keys)
    known = {s.id for s in stations}

    feats = []
    for st in stations:
        props: dict = {"id": st.id, "name": st.name, "kind": st.kind}
        if st.name_zh:
            props["name_zh"] = st.name_zh
        if st.zone in zone_ids:
            props["zone"] = st.zone
        if st.thresholds:
            props["thresholds"] = {**st.thresholds, "unit": KIND_UNITS[st.kind]}
        feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [st.lon, st.lat]},
                      "properties": props})
    (out / "stations.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats},
                                                     ensure_ascii=False, indent=1), encoding="utf-8")
    zfeats = [{"type": "Feature", "geometry": z.geometry,
               "properties": {k: v for k, v in {"id": z.id, "name": z.name, "name_zh": z.name_zh, "risk": z.risk,
                                                "geocodes": z.geocodes or None}.items() if v}}
              for z in sorted(zones, key=lambda z: z.id)]
    (out / "zones.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": zfeats},
                                                  ensure_ascii=False, indent=1), encoding="utf-8")
    if resources is not None:
        shutil.copyfile(resources, out / "resources.csv")
    else:
        (out / "resources.csv").write_text(",".join(RESOURCES_HEADER) + "\n", encoding="utf-8")
    rules_raw = r.get(keys.rules)
    rules_doc = orjson.loads(rules_raw) if rules_raw else {"levels": ["yellow", "orange", "red"], "rules": []}
    (out / "rules.yaml").write_text(yaml.safe_dump(rules_doc, allow_unicode=True, sort_keys=False), encoding="utf-8")

    n = 0
    with (out / "readings.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(READINGS_HEADER)
        for t, sid, kind, value in rows:
            if sid not in known:
                continue  # a reading whose station the feed never described cannot be replayed
            w.writerow([to_iso(t), sid, kind, repr(value), KIND_UNITS.get(kind, "")])
            n += 1
    warnings = [orjson.loads(f[b"warning"]) for _eid, f in read_stream(r, keys.warnings_stream)]
    with (out / "warnings.jsonl").open("w", encoding="utf-8") as fh:
        for wd in warnings:
            fh.write(json.dumps(wd, ensure_ascii=False) + "\n")
    forecasts = {k.decode(): orjson.loads(v) for k, v in r.hgetall(keys.forecasts).items()}
    (out / "forecasts.json").write_text(json.dumps(forecasts, ensure_ascii=False), encoding="utf-8")
    start = rows[0][0] if rows else now_ms()
    start -= start % 60_000  # the minute of the first reading
    doc = {"name": name, "description": description, "start": to_iso(start), "timezone": "UTC",
           "stations": "stations.geojson", "zones": "zones.geojson", "resources": "resources.csv",
           "rules": "rules.yaml", "readings": "readings.csv"}
    (out / "scenario.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return RecordResult(keys.ns, out, n, len(stations), len(warnings))
