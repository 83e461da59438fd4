"""Generate the Jiangcheng (江城) sample data set for the flood command dashboard.

Jiangcheng is a fictional river city on a bend of the Qingjiang River (清江), where
the Shahe (沙河) tributary joins it.  This script (re)writes, under ``sample_data/``:

* ``stations.geojson``  - 20 water-level gauges (5 of them report in feet) and
  12 rain gauges (3 of them report in inches), with thresholds and zone ids;
* ``zones.geojson``     - 6 flood-risk zones (one MultiPolygon of two islands);
* ``rivers.geojson``    - the river and its tributary, for a base map without tiles;
* ``roads.geojson``     - the street grid, cut by the two rivers and joined again only at nine
  named bridges, for travel times (docs/dispatch.md);
* ``landmarks.geojson`` - depots, fire stations, hospitals, police stations and shelters, named in
  English and Chinese, for the offline base map;
* ``resources.csv``     - 34 resources of the field departments;
* ``departments.yaml``  - the departments, including the command centre;
* ``rules.yaml``        - the alert rules (one of each rule kind) and the planning profile of each
  resource type;
* ``scenarios/jiangcheng_flood/``: ``scenario.yaml``, ``readings.csv`` (48 h at
  15-minute steps, with deliberate faults) and ``incidents.csv``.

The scenario and its deliberate faults are described in ``docs/scenarios.md``.
The output is deterministic: a fixed random seed, fixed formatting, and no
dependency beyond the standard library and numpy.  Run it from the project root::

    .venv/bin/python sample_data/generate.py
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

SEED = 20260714
HERE = Path(__file__).resolve().parent
SCENARIO_DIR = HERE / "scenarios" / "jiangcheng_flood"

TZ = timezone(timedelta(hours=8))
START = datetime(2026, 7, 14, 0, 0, tzinfo=TZ)
STEP_MINUTES = 15
STEPS = 48 * 60 // STEP_MINUTES  # 192 readings per station
FEET_PER_METRE = 1 / 0.3048
MM_PER_INCH = 25.4
METRES_PER_FURLONG = 201.168

# --------------------------------------------------------------------------
# Geography
# --------------------------------------------------------------------------

QINGJIANG = [  # main river, flowing west to north-east around the bend
    (114.200, 30.520), (114.230, 30.514), (114.258, 30.517), (114.282, 30.528),
    (114.300, 30.546), (114.309, 30.570), (114.307, 30.596), (114.316, 30.621),
    (114.338, 30.640), (114.368, 30.652), (114.400, 30.662), (114.428, 30.676),
    (114.450, 30.690),
]
SHAHE = [  # tributary from the south-east, joining at the bend
    (114.445, 30.455), (114.420, 30.472), (114.392, 30.488), (114.366, 30.505),
    (114.342, 30.521), (114.320, 30.534), (114.300, 30.546),
]


@dataclass(frozen=True)
class Zone:
    id: str
    name: str
    name_zh: str
    risk: str
    parts: tuple  # one or more exterior rings, each a tuple of (lon, lat)


ZONES = (
    Zone("Z-RIVERSIDE", "Riverside Old Quay", "滨江老码头区", "high", (
        ((114.245, 30.512), (114.285, 30.518), (114.308, 30.540), (114.318, 30.566),
         (114.316, 30.598), (114.292, 30.600), (114.280, 30.575), (114.262, 30.548),
         (114.245, 30.535)),
    )),
    Zone("Z-SHAHE", "Shahe Confluence Lowland", "沙河口低洼区", "high", (
        ((114.312, 30.520), (114.340, 30.505), (114.372, 30.492), (114.385, 30.505),
         (114.360, 30.530), (114.335, 30.545), (114.318, 30.548)),
    )),
    Zone("Z-ISLANDS", "Jiangxin Islands", "江心洲", "high", (
        ((114.346, 30.6445), (114.352, 30.6425), (114.362, 30.6440), (114.367, 30.6490),
         (114.360, 30.6515), (114.350, 30.6505)),
        ((114.383, 30.6565), (114.390, 30.6550), (114.400, 30.6570), (114.403, 30.6615),
         (114.396, 30.6635), (114.386, 30.6615)),
    )),
    Zone("Z-OLDTOWN", "Old Town North Bank", "老城北岸", "medium", (
        ((114.255, 30.605), (114.300, 30.605), (114.310, 30.625), (114.330, 30.648),
         (114.300, 30.668), (114.262, 30.660), (114.248, 30.630)),
    )),
    Zone("Z-NANHU", "Nanhu Industrial Park", "南湖工业园", "medium", (
        ((114.205, 30.470), (114.260, 30.470), (114.262, 30.505), (114.210, 30.505)),
    )),
    Zone("Z-EASTHILLS", "East Hills Residential", "东山住宅区", "low", (
        ((114.390, 30.560), (114.440, 30.560), (114.445, 30.610), (114.420, 30.625),
         (114.385, 30.600)),
    )),
)

# --------------------------------------------------------------------------
# Stations
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class WaterGauge:
    """A water-level gauge whose stage follows a gamma-shaped flood wave.

    ``base`` is the pre-storm stage and ``peak`` the crest, both in ``unit``;
    the wave starts at hour ``onset`` and crests ``rise_hours`` later.  ``shape``
    is the gamma exponent: 4 for the slow main river, 3 for the flashy Shahe.
    """

    id: str
    name: str
    name_zh: str
    lon: float
    lat: float
    unit: str
    base: float
    peak: float
    yellow: float
    orange: float
    red: float
    onset: float
    rise_hours: float
    shape: int


@dataclass(frozen=True)
class RainGauge:
    """A rain gauge; ``peak_1h_mm`` is the wettest hour before noise is added."""

    id: str
    name: str
    name_zh: str
    lon: float
    lat: float
    unit: str
    peak_1h_mm: float


W = WaterGauge
WATER_GAUGES = (
    # Qingjiang main river, upstream (west) to downstream (north-east)
    W("WL-001", "Xishan Upstream", "西山上游站", 114.203, 30.523, "m", 24.60, 26.10, 25.80, 26.50, 27.20, 8.0, 12, 4),
    W("WL-002", "Baishi Bridge", "白石桥站", 114.232, 30.5165, "m", 24.30, 25.40, 25.80, 26.40, 27.00, 8.5, 12, 4),
    W("WL-003", "Riverside Park", "滨江公园站", 114.258, 30.5195, "m", 22.80, 25.90, 24.40, 25.00, 25.60, 9.0, 12, 4),
    W("WL-004", "Old Ferry Pier", "老码头站", 114.281, 30.531, "ft", 74.0, 82.2, 79.0, 81.2, 83.5, 9.5, 12, 4),
    W("WL-005", "Bend Pumping Station", "弯道泵站", 114.303, 30.552, "m", 22.40, 25.60, 24.00, 24.70, 25.30, 10.0, 12, 4),
    W("WL-006", "Bend North", "弯道北站", 114.311, 30.578, "m", 22.10, 24.60, 23.70, 24.30, 25.00, 10.5, 12, 4),
    W("WL-007", "Jiangcheng Hydrological Station", "江城水文站", 114.309, 30.600, "m", 21.90, 24.50, 23.50, 24.20, 24.90, 11.0, 12, 4),
    W("WL-008", "North Bank Embankment", "北岸堤防站", 114.303, 30.618, "ft", 71.5, 76.4, 75.5, 77.8, 79.5, 11.5, 12, 4),
    W("WL-009", "Old Town Wharf", "老城码头站", 114.318, 30.638, "m", 21.50, 22.50, 22.90, 23.50, 24.10, 12.0, 12, 4),
    W("WL-010", "Jiangxin Island West", "江心洲西站", 114.356, 30.647, "m", 21.20, 23.70, 22.80, 23.40, 24.10, 12.5, 12, 4),
    W("WL-011", "Jiangxin Island East", "江心洲东站", 114.392, 30.659, "ft", 68.5, 78.3, 73.0, 75.5, 77.3, 13.0, 12, 4),
    W("WL-012", "Beigang Lock", "北港船闸站", 114.415, 30.668, "m", 20.80, 21.90, 22.40, 23.00, 23.60, 13.5, 12, 4),
    W("WL-013", "Dongkou Outflow", "东口出城站", 114.447, 30.687, "m", 20.50, 22.10, 21.80, 22.50, 23.20, 14.0, 12, 4),
    W("WL-014", "Eastern Levee", "东堤站", 114.345, 30.636, "m", 21.40, 22.40, 22.90, 23.50, 24.10, 12.0, 12, 4),
    # Shahe tributary, upstream (south-east) to the confluence, and an urban drain
    W("WL-015", "Shahe Upper", "沙河上游站", 114.440, 30.459, "ft", 88.0, 90.6, 92.0, 94.0, 96.0, 9.0, 6, 3),
    W("WL-016", "Hongqiao", "虹桥站", 114.405, 30.481, "m", 25.60, 27.10, 26.80, 27.50, 28.20, 9.5, 6, 3),
    W("WL-017", "Shahe Middle", "沙河中游站", 114.370, 30.503, "m", 24.20, 27.20, 25.60, 26.30, 26.90, 10.0, 6, 3),
    W("WL-018", "Shahe Mouth", "沙河口站", 114.335, 30.527, "m", 23.00, 25.40, 24.40, 25.10, 25.80, 10.5, 8, 3),
    W("WL-019", "Shahe Pumping Station", "沙河泵站", 114.350, 30.520, "ft", 75.0, 79.3, 78.5, 80.5, 82.5, 10.5, 10, 3),
    W("WL-020", "Nanhu Drainage Channel", "南湖排涝渠站", 114.240, 30.500, "m", 19.80, 20.50, 21.00, 21.50, 22.00, 10.0, 5, 3),
)

R = RainGauge
RAIN_GAUGES = (
    R("RF-001", "Xishan Rain Gauge", "西山雨量站", 114.215, 30.545, "mm", 28),
    R("RF-002", "Nanhu Rain Gauge", "南湖雨量站", 114.230, 30.485, "mm", 42),
    R("RF-003", "Riverside Rain Gauge", "滨江雨量站", 114.275, 30.560, "mm", 58),
    R("RF-004", "Jiangcheng Weather Observatory", "江城气象台", 114.290, 30.625, "mm", 44),
    R("RF-005", "Old Town Rain Gauge", "老城雨量站", 114.270, 30.645, "mm", 27),
    R("RF-006", "Shahe Rain Gauge", "沙河雨量站", 114.355, 30.510, "mm", 63),
    R("RF-007", "Hongqiao Rain Gauge", "虹桥雨量站", 114.420, 30.495, "mm", 27),
    R("RF-008", "East Hills Rain Gauge", "东山雨量站", 114.415, 30.590, "in", 15),
    R("RF-009", "Beigang Rain Gauge", "北港雨量站", 114.430, 30.650, "mm", 43),
    R("RF-010", "Airport Rain Gauge", "机场雨量站", 114.440, 30.530, "in", 14),
    R("RF-011", "North Hills Rain Gauge", "北山雨量站", 114.360, 30.690, "in", 11),
    R("RF-012", "Xinzhou Rain Gauge", "新洲雨量站", 114.330, 30.580, "mm", 58),
)

SILENT_STATION = "WL-012"
SILENT_HOURS = (22, 26)  # no rows with start+22h <= time < start+26h

# --------------------------------------------------------------------------
# Resources, departments, incidents, rules
# --------------------------------------------------------------------------

RESOURCES = (
    # id, department, type, name, lat, lon, status, capacity
    ("WA-PUMP-01", "water_authority", "pump", "Mobile Pump 1 (Riverside Depot)", 30.552, 114.272, "available", 1000),
    ("WA-PUMP-02", "water_authority", "pump", "Mobile Pump 2 (Riverside Depot)", 30.552, 114.272, "available", 1000),
    ("WA-PUMP-03", "water_authority", "pump", "Large Drainage Pump Truck 3", 30.612, 114.284, "available", 3000),
    ("WA-PUMP-04", "water_authority", "pump", "Mobile Pump 4 (Water Authority HQ)", 30.612, 114.284, "out_of_service", 800),
    ("WA-PUMP-05", "water_authority", "pump", "Mobile Pump 5 (Shahe Station)", 30.522, 114.352, "available", 1200),
    ("FR-BOAT-01", "fire_rescue", "rescue_boat", "Rescue Boat 1 (Binjiang Fire Station)", 30.565, 114.296, "available", 8),
    ("FR-BOAT-02", "fire_rescue", "rescue_boat", "Rescue Boat 2 (Binjiang Fire Station)", 30.565, 114.296, "available", 8),
    ("FR-BOAT-03", "fire_rescue", "rescue_boat", "Rescue Boat 3 (Old Town Fire Station)", 30.632, 114.281, "available", 12),
    ("FR-BOAT-04", "fire_rescue", "rescue_boat", "Rescue Boat 4 (Shahe Fire Station)", 30.515, 114.362, "available", 6),
    ("FR-BOAT-05", "fire_rescue", "rescue_boat", "Rescue Boat 5 (Beigang Fire Station)", 30.660, 114.420, "out_of_service", 10),
    ("FR-CREW-01", "fire_rescue", "rescue_crew", "Rescue Crew 1 (Binjiang)", 30.565, 114.296, "available", 6),
    ("FR-CREW-02", "fire_rescue", "rescue_crew", "Rescue Crew 2 (Old Town)", 30.632, 114.281, "available", 8),
    ("FR-CREW-03", "fire_rescue", "rescue_crew", "Rescue Crew 3 (Shahe)", 30.515, 114.362, "available", 6),
    ("FR-CREW-04", "fire_rescue", "rescue_crew", "Rescue Crew 4 (Beigang)", 30.660, 114.420, "available", 8),
    ("POL-01", "police", "police_unit", "Police Unit Binjiang 1", 30.545, 114.268, "available", 4),
    ("POL-02", "police", "police_unit", "Police Unit Binjiang 2", 30.545, 114.268, "available", 4),
    ("POL-03", "police", "police_unit", "Police Unit Old Town", 30.640, 114.292, "available", 4),
    ("POL-04", "police", "police_unit", "Police Unit Shahe", 30.508, 114.380, "available", 4),
    ("POL-05", "police", "police_unit", "Traffic Police Unit East", 30.600, 114.410, "available", 2),
    ("MED-AMB-01", "medical", "ambulance", "Ambulance 1 (City Central Hospital)", 30.622, 114.268, "available", 2),
    ("MED-AMB-02", "medical", "ambulance", "Ambulance 2 (City Central Hospital)", 30.622, 114.268, "available", 2),
    ("MED-AMB-03", "medical", "ambulance", "Ambulance 3 (Shahe Clinic)", 30.500, 114.392, "available", 2),
    ("MED-AMB-04", "medical", "ambulance", "Ambulance 4 (East Hills Hospital)", 30.585, 114.425, "dispatched", 2),
    ("MED-AMB-05", "medical", "ambulance", "Ambulance 5 (Nanhu Clinic)", 30.488, 114.225, "available", 2),
    ("PW-PUMP-01", "public_works", "pump", "Municipal Drain Pump 1 (Nanhu)", 30.495, 114.245, "available", 500),
    ("PW-PUMP-02", "public_works", "pump", "Municipal Drain Pump 2 (Nanhu)", 30.495, 114.245, "available", 500),
    ("PW-PUMP-03", "public_works", "pump", "Municipal Drain Pump 3 (Old Town)", 30.640, 114.275, "available", 800),
    ("PW-SAND-01", "public_works", "sandbag_truck", "Sandbag Truck 1 (Materials Yard)", 30.580, 114.262, "available", 1500),
    ("PW-SAND-02", "public_works", "sandbag_truck", "Sandbag Truck 2 (Materials Yard)", 30.580, 114.262, "available", 1500),
    ("PW-SAND-03", "public_works", "sandbag_truck", "Sandbag Truck 3 (Materials Yard)", 30.580, 114.262, "dispatched", 1500),
    ("PW-SAND-04", "public_works", "sandbag_truck", "Sandbag Truck 4 (East Depot)", 30.575, 114.400, "available", 1000),
    ("PW-EXC-01", "public_works", "excavator", "Excavator 1 (Materials Yard)", 30.580, 114.262, "available", None),
    ("PW-EXC-02", "public_works", "excavator", "Excavator 2 (East Depot)", 30.575, 114.400, "available", None),
    ("MET-RADAR-01", "meteorology", "radar_van", "Mobile X-band Radar Van", 30.625, 114.290, "available", None),
)

DEPARTMENTS = (
    ("emergency_management", "Emergency Management Bureau (command centre)", "应急管理局"),
    ("water_authority", "Water Authority", "水务局"),
    ("fire_rescue", "Fire and Rescue", "消防救援支队"),
    ("police", "Police", "公安局"),
    ("medical", "Medical Emergency Services", "医疗急救中心"),
    ("public_works", "Public Works", "市政局"),
    ("meteorology", "Meteorological Bureau", "气象局"),
)

INCIDENTS = (
    # hours after start, id, category, lat, lon, severity, description, status
    (9.67, "INC-001", "road_closed", 30.488, 114.236, "yellow",
     "Nanhu Road underpass flooded to 0.4 m, closed to traffic", ""),
    (11.33, "INC-002", "flooding", 30.515, 114.355, "orange",
     "Street flooding in Shahe Lane, water 0.5 m deep, ground-floor shops affected", ""),
    (12.08, "INC-003", "landslide", 30.605, 114.425, "orange",
     "Slope failure above Dongshan Road, one lane blocked by mud", ""),
    (13.5, "INC-004", "power_outage", 30.650, 114.280, "yellow",
     "Old Town substation tripped, about 2,000 households without power; restored after 40 minutes", "closed"),
    (14.17, "INC-005", "trapped_people", 30.525, 114.340, "red",
     'Family of four trapped on a roof near the Shahe mouth, caller says "water is up to the second floor"', "open"),
    (15.75, "INC-006", "flooding", 30.630, 114.265, "orange",
     "Basement car park flooding at Old Town market", ""),
    (17.33, "INC-007", "road_closed", 30.585, 114.305, "yellow",
     "Riverside Avenue closed between Bend Park and the ferry terminal", ""),
    (19.0, "INC-008", "trapped_people", 30.520, 114.430, "orange",
     "Car stalled in floodwater on the airport expressway, two occupants waiting on the roof", ""),
    (21.5, "INC-009", "flooding", 30.535, 114.284, "orange",
     "River water overtopping the quay wall at Old Ferry Pier", ""),
    (23.25, "INC-010", "levee_breach", 30.6600, 114.395, "red",
     "Seepage and partial breach of the ring levee on Jiangxin Island East", "open"),
    (25.67, "INC-011", "trapped_people", 30.6475, 114.356, "red",
     "About 30 residents stranded in the Jiangxin Island West village, access road under water", ""),
    (27.17, "INC-012", "power_outage", 30.560, 114.300, "orange",
     "Bend pumping station lost mains power, running on backup generator", ""),
    (33.0, "INC-013", "landslide", 30.685, 114.340, "yellow",
     "Small landslide on the North Hills forest road, no one hurt", ""),
    (38.5, "INC-014", "road_closed", 30.672, 114.445, "yellow",
     "Dongkou bridge approach closed for inspection after the flood crest", ""),
)

INJECTS = (
    {"at": "20h", "type": "resource_status", "resource_id": "FR-BOAT-02",
     "status": "out_of_service", "note": "engine failure"},
    {"at": "28h", "type": "incident", "incident_id": "INJ-1", "category": "levee_breach",
     "lat": 30.528, "lon": 114.270, "severity": "red",
     "description": "Levee breach behind Riverside Park, water entering the Binjiang residential blocks"},
    {"at": "36h", "type": "resource_status", "resource_id": "FR-BOAT-02",
     "status": "available", "note": "engine repaired"},
)

RULES_YAML = """\
levels: [yellow, orange, red]
# How each type of unit travels where roads give no speed, and how long it takes to set up on
# scene (docs/dispatch.md). A road's own speed_kmh applies to every type.
resource_types:
  pump: {speed_kmh: 40, setup: 20m}
  sandbag_truck: {speed_kmh: 35, setup: 15m}
  rescue_crew: {speed_kmh: 50, setup: 5m}
  rescue_boat: {speed_kmh: 35, setup: 15m}
  ambulance: {speed_kmh: 60, setup: 2m}
  police_unit: {speed_kmh: 60}
  excavator: {speed_kmh: 25, setup: 20m}
  radar_van: {speed_kmh: 50, setup: 30m}
rules:
  - id: river-stage
    kind: threshold
    match: {kind: water_level}
    above: thresholds          # each station's own thresholds
    for: 30m
    clear_margin: 0.05
    respond_within: 1h         # the units working within an hour, or before the next level if sooner
    recommend: [{type: pump, count: 2}, {type: sandbag_truck, count: 1}]
  - {id: rapid-rise, kind: rate_of_rise, match: {kind: water_level}, window: 1h, above: {orange: 0.3, red: 0.6}, for: 15m, respond_within: 30m, recommend: [{type: rescue_crew, count: 1}]}
  - {id: heavy-rain, kind: accumulation, match: {kind: rainfall}, window: 1h, above: {yellow: 20, orange: 35, red: 50}}
  - {id: sensor-silent, kind: stale, match: {kind: water_level}, after: 1h, level: yellow}
  - {id: incident-in-risk-zone, kind: zone_incident, zones: {risk: high}, categories: [trapped_people, levee_breach, flooding], level: red, respond_within: 30m, recommend: [{type: rescue_boat, count: 1}, {type: ambulance, count: 1}]}
"""

# --------------------------------------------------------------------------
# Roads: a street grid cut by the rivers, joined again at named bridges
# --------------------------------------------------------------------------

GRID_LON = (114.196, 0.008, 33)  # first column, spacing, count (about 770 m apart)
GRID_LAT = (30.448, 0.007, 36)  # first row, spacing, count (about 780 m apart)
RIVER_CLEARANCE_M = 120.0  # no crossing of streets closer than this to a river line
STREET_KMH, AVENUE_KMH, BRIDGE_KMH = 30, 50, 40
AVENUE_EVERY = 4  # every 4th row and column is an avenue
ROW_NAMES = (
    "Nanjiao", "Qiaokou", "Nanhu", "Gongye", "Xiangyang", "Baishi", "Binhe", "Shahe", "Hongqi", "Heping",
    "Wanqu", "Minsheng", "Zhongshan", "Jiefang", "Renmin", "Xinhua", "Wenhua", "Youyi", "Chaoyang",
    "Guangming", "Jianshe", "Hongxing", "Laocheng", "Gulou", "Fuqian", "Beimen", "Jiangxin", "Beigang",
    "Shuiyuan", "Xingfu", "Donghu", "Beishan", "Dongkou", "Songlin", "Yunxi", "Qingshan",
)
COL_NAMES = (
    "Xishan", "Baiyun", "Taoyuan", "Lianhua", "Jinhua", "Meiyuan", "Longquan", "Fenghuang", "Yuhua",
    "Binjiang", "Matou", "Dukou", "Wanshou", "Shuiguan", "Yingbin", "Hangkong", "Zhonghua", "Xinzhou",
    "Jingwei", "Huayuan", "Shaxi", "Qingyun", "Hongqiao", "Dongshan", "Yangguang", "Shuangfeng",
    "Gangcheng", "Dongting", "Jichang", "Kouan", "Qingxi", "Tianhe", "Haitang",
)
# Streets drivable one way only, in the order drawn: (row index, first column, last column, west to east)
ONE_WAY_ROWS = ((23, 8, 14, True), (24, 8, 14, False))  # Laocheng Road eastbound, Gulou Road westbound
# Bridges over a river line: the crossing nearest this point (each end a grid vertex on its bank)
BRIDGES = (
    ("Baishi Bridge", 114.232, 30.5165),
    ("Binjiang Bridge", 114.274, 30.524),
    ("Jiangcheng Bridge", 114.308, 30.588),
    ("Dongkou Bridge", 114.444, 30.685),
    ("Shahe Mouth Bridge", 114.322, 30.532),
    ("Shahe Bridge", 114.358, 30.510),
    ("Hongqiao Bridge", 114.405, 30.481),
)
# The islands' village roads, each reached by one bridge from one bank: (name, line, bridge, bank point)
ISLAND_ROADS = (
    ("Xizhou Village Road", ((114.349, 30.6465), (114.356, 30.647), (114.363, 30.6475)),
     "Jiangxin Bridge", (114.340, 30.653)),
    ("Dongzhou Village Road", ((114.387, 30.6585), (114.394, 30.6595), (114.400, 30.6595)),
     "Beigang Bridge", (114.407, 30.651)),
)

SCENARIO_DESCRIPTION = (
    "A slow-moving rainstorm crosses Jiangcheng from the south-west between hours 8 and 20, "
    "with more than 50 mm in an hour over the riverside, the Shahe valley and Xinzhou. "
    "The Shahe tributary crests first (around hours 15-18), then the Qingjiang flood wave "
    "travels through the city and crests between hours 20 and 26, overtopping the quay "
    "and breaching a levee, before the water falls back below every threshold by hour 40."
)
SCENARIO_DESCRIPTION_ZH = (
    "一场移动缓慢的暴雨于第8至20小时自西南向东北横扫江城，滨江、沙河流域和新洲一带小时雨量超过50毫米。"
    "沙河首先在第15至18小时前后出现洪峰，随后清江洪水穿城而过，于第20至26小时达到洪峰，"
    "江水漫过老码头并造成堤防决口；至第40小时，各站水位均回落至警戒线以下。"
)

# Deliberate faults in readings.csv, keyed by (station id, step); see docs/scenarios.md.
EMPTY_VALUES = (("WL-002", 13), ("RF-005", 22), ("WL-014", 163))
NON_NUMERIC_VALUES = (("WL-009", 28, "n/a"), ("RF-001", 177, "ERR"))
UNKNOWN_UNIT = ("WL-016", 24, "furlong")
UNKNOWN_STATION_ROWS = (("WL-999", 48, "3.210"), ("WL-999", 49, "3.250"))
DUPLICATED = (("RF-012", 54), ("RF-003", 56), ("WL-017", 64), ("WL-005", 80), ("WL-011", 92))
OUT_OF_ORDER_COUNT = 20
QUIET_STEP_RANGES = ((4, 28), (164, 188))  # hours 1-7 and 41-47: no threshold is near

# --------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------


def signed_area(ring):
    """Shoelace area of an open ring; positive when counter-clockwise."""
    total = 0.0
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        total += x1 * y2 - x2 * y1
    return total / 2


def closed_ccw(ring):
    """Return the ring as a closed, counter-clockwise list of [lon, lat]."""
    points = list(ring)
    if signed_area(points) < 0:
        points.reverse()
    points.append(points[0])
    return [[round(x, 6), round(y, 6)] for x, y in points]


def ring_contains(ring, lon, lat):
    """Even-odd ray casting test for a point in an open ring."""
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (y1 > lat) != (y2 > lat):
            x_cross = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if lon < x_cross:
                inside = not inside
    return inside


def zone_of(lon, lat):
    """Id of the zone containing the point, or None."""
    for zone in ZONES:
        if any(ring_contains(list(part), lon, lat) for part in zone.parts):
            return zone.id
    return None


def metres_xy(lon, lat):
    """Local metres (equirectangular about the city's latitude)."""
    return (lon * 111_320.0 * math.cos(math.radians(30.57)), lat * 110_574.0)


def segments_cross(p1, p2, q1, q2):
    """Do the segments p1-p2 and q1-q2 cross (touching counts)?"""
    def orient(a, b, c):
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    return d1 * d2 <= 0 and d3 * d4 <= 0


def point_segment_m(p, a, b):
    """Distance in metres from point p to segment a-b (all (lon, lat))."""
    (px, py), (ax, ay), (bx, by) = metres_xy(*p), metres_xy(*a), metres_xy(*b)
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / max(dx * dx + dy * dy, 1e-9)))
    return math.hypot(px - ax - t * dx, py - ay - t * dy)


# The rivers run on past the edge of the street grid: no street goes round the end of a river line.
RIVERS_BEYOND_GRID = ([(114.160, 30.522)] + QINGJIANG + [(114.490, 30.712)], [(114.490, 30.425)] + SHAHE)


def river_crossings(a, b):
    """How many river segments the segment a-b crosses."""
    return sum(segments_cross(a, b, p, q) for line in RIVERS_BEYOND_GRID for p, q in zip(line, line[1:], strict=False))


def near_river(p):
    return any(point_segment_m(p, a, b) < RIVER_CLEARANCE_M
               for line in RIVERS_BEYOND_GRID for a, b in zip(line, line[1:], strict=False))


ISLANDS = next(z for z in ZONES if z.id == "Z-ISLANDS").parts


def on_island(p):
    return any(ring_contains(list(part), p[0], p[1]) for part in ISLANDS)


def grid_point(i, j):
    lon0, dlon, _ = GRID_LON
    lat0, dlat, _ = GRID_LAT
    return (round(lon0 + i * dlon, 6), round(lat0 + j * dlat, 6))


def street_grid():
    """The grid's vertices kept (not on a river bank, not on an island) and its open links."""
    ncol, nrow = GRID_LON[2], GRID_LAT[2]
    kept = {(i, j) for i in range(ncol) for j in range(nrow)
            if not near_river(grid_point(i, j)) and not on_island(grid_point(i, j))}

    def link(a, b):
        pa, pb = grid_point(*a), grid_point(*b)
        if a not in kept or b not in kept or river_crossings(pa, pb):
            return False
        return not any(on_island(((pa[0] * (4 - k) + pb[0] * k) / 4, (pa[1] * (4 - k) + pb[1] * k) / 4))
                       for k in range(1, 4))
    return kept, link


def grid_lines(kept, link, along_row):
    """Each row (or column) of the grid as LineStrings of consecutive open links, with its properties."""
    ncol, nrow = GRID_LON[2], GRID_LAT[2]
    features = []
    for k in range(nrow if along_row else ncol):
        cells = [(i, k) for i in range(ncol)] if along_row else [(k, j) for j in range(nrow)]
        avenue = k % AVENUE_EVERY == 2
        name = (f"{ROW_NAMES[k]} {'Avenue' if avenue else 'Road'}" if along_row
                else f"{COL_NAMES[k]} {'Avenue' if avenue else 'Street'}")
        one_way = [ow for ow in ONE_WAY_ROWS if along_row and ow[0] == k]
        run = []
        for a, b in zip(cells, cells[1:], strict=False):
            if link(a, b):
                run = run or [a]
                run.append(b)
                continue
            if run:
                features += street_features(run, name, avenue, one_way)
            run = []
        if run:
            features += street_features(run, name, avenue, one_way)
    return features


def street_features(run, name, avenue, one_way):
    """A run of grid cells as road features; a one-way stretch is its own feature."""
    speed = AVENUE_KMH if avenue else STREET_KMH
    pieces = [(run, False)]
    if one_way:
        _, first, last, eastward = one_way[0]
        inside = [c for c in run if first <= c[0] <= last]
        if len(inside) >= 2:
            before = [c for c in run if c[0] <= first]
            after = [c for c in run if c[0] >= last]
            pieces = [(before, False), (inside if eastward else inside[::-1], True), (after, False)]
    out = []
    for cells, oneway in pieces:
        if len(cells) < 2:
            continue
        props = {"name": name, "speed_kmh": speed}
        if oneway:
            props["oneway"] = True
        out.append({"type": "Feature", "properties": props,
                    "geometry": {"type": "LineString", "coordinates": [list(grid_point(*c)) for c in cells]}})
    return out


def bridge_feature(name, a, b):
    return {"type": "Feature", "properties": {"name": name, "speed_kmh": BRIDGE_KMH, "kind": "bridge"},
            "geometry": {"type": "LineString", "coordinates": [list(a), list(b)]}}


def distance_m(a, b):
    (ax, ay), (bx, by) = metres_xy(*a), metres_xy(*b)
    return math.hypot(ax - bx, ay - by)


def road_features():
    """GeoJSON LineStrings of the streets, the bridges and the island roads."""
    kept, link = street_grid()
    features = grid_lines(kept, link, True) + grid_lines(kept, link, False)
    vertices = sorted(grid_point(*c) for c in kept)
    for name, lon, lat in BRIDGES:
        here = (lon, lat)
        near = [v for v in vertices if distance_m(v, here) < 1_200]
        pairs = [(distance_m(a, here) + distance_m(b, here), a, b) for a in near for b in near
                 if a < b and river_crossings(a, b) == 1 and distance_m(a, b) < 1_600]
        _, a, b = min(pairs)
        features.append(bridge_feature(name, a, b))
    for road, line, bridge, bank in ISLAND_ROADS:
        features.append({"type": "Feature", "properties": {"name": road, "speed_kmh": STREET_KMH},
                         "geometry": {"type": "LineString", "coordinates": [list(p) for p in line]}})
        end = min((line[0], line[-1]), key=lambda p: distance_m(p, bank))
        landing = min((v for v in vertices if not river_crossings(v, bank)), key=lambda v: distance_m(v, bank))
        features.append(bridge_feature(bridge, end, landing))
    return features


# --------------------------------------------------------------------------
# Time series models
# --------------------------------------------------------------------------


def hours_axis():
    """Hours since start of every reading: 0, 0.25, ..., 47.75."""
    return np.arange(STEPS) * STEP_MINUTES / 60.0


def flood_wave(hours, onset, rise_hours, shape):
    """Gamma-shaped flood wave, 0 before ``onset`` and 1 at the crest."""
    x = np.clip((hours - onset) / rise_hours, 0.0, None)  # time in units of the rise time
    return x**shape * np.exp(shape * (1.0 - x))


def ar1_noise(rng, n, sigma, phi=0.7):
    """Autocorrelated measurement noise with standard deviation ``sigma``."""
    shocks = rng.normal(0.0, sigma * math.sqrt(1 - phi * phi), n)
    noise = np.empty(n)
    noise[0] = rng.normal(0.0, sigma)
    for i in range(1, n):
        noise[i] = phi * noise[i - 1] + shocks[i]
    return noise


def water_levels(gauge, rng):
    """Stage of a water-level gauge at every step, in the gauge's unit."""
    sigma = 0.006 * (FEET_PER_METRE if gauge.unit == "ft" else 1.0)
    wave = flood_wave(hours_axis(), gauge.onset, gauge.rise_hours, gauge.shape)
    return gauge.base + (gauge.peak - gauge.base) * wave + ar1_noise(rng, STEPS, sigma)


def storm_centre_hour(lon, lat):
    """Hour at which the storm's core passes a point (it moves SW to NE)."""
    return 11.5 + 2.5 * ((lon - 114.20) + (lat - 30.45)) / 0.5


def storm_intensity(hours, centre):
    """Relative rain rate: leading band, convective core, trailing rain."""
    def bump(mu, sigma):
        return np.exp(-0.5 * ((hours - mu) / sigma) ** 2)
    return 0.35 * bump(centre - 3.0, 1.2) + bump(centre, 1.3) + 0.3 * bump(centre + 3.5, 2.0)


def rainfall_mm(gauge, rng):
    """Rain depth in mm in the 15 minutes ending at every step."""
    sub = np.linspace(-STEP_MINUTES / 60.0, 0.0, 7)[1:]  # sample points inside each interval
    hours = hours_axis()
    rate = storm_intensity(hours[:, None] + sub[None, :], storm_centre_hour(gauge.lon, gauge.lat))
    depth = rate.mean(axis=1) * STEP_MINUTES / 60.0
    wettest_hour = np.convolve(depth, np.ones(4), mode="valid").max()
    depth *= gauge.peak_1h_mm / wettest_hour
    depth *= np.exp(rng.normal(0.0, 0.08, STEPS))
    return np.where(depth < 0.05, 0.0, depth)


# --------------------------------------------------------------------------
# Formatting and writing
# --------------------------------------------------------------------------


def iso(step):
    """ISO 8601 time of a step, with the +08:00 offset."""
    return (START + timedelta(minutes=STEP_MINUTES * step)).isoformat()


def iso_hours(hours):
    """ISO 8601 time ``hours`` after the start, rounded to the minute."""
    return (START + timedelta(minutes=round(hours * 60))).isoformat()


def fmt(value, unit):
    """Format a reading with the resolution its instrument reports."""
    decimals = {"m": 3, "ft": 2, "mm": 2, "in": 3}[unit]
    return f"{value:.{decimals}f}"


def write_text(path, text):
    """Write UTF-8 text with Unix newlines, creating folders as needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def write_csv(path, header, rows):
    """Write a CSV file with minimal quoting and Unix newlines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_geojson(path, features):
    """Write a GeoJSON FeatureCollection."""
    collection = {"type": "FeatureCollection", "features": features}
    write_text(path, json.dumps(collection, ensure_ascii=False, indent=2) + "\n")


PLAIN_YAML = re.compile(r"[A-Za-z][A-Za-z0-9_ -]*|[0-9]+[smhd]")  # words, durations
YAML_KEYWORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}


def yaml_str(value):
    """A YAML scalar: simple words plain, other strings JSON-quoted (valid YAML)."""
    if not isinstance(value, str):
        return repr(value)
    if PLAIN_YAML.fullmatch(value) and value.lower() not in YAML_KEYWORDS:
        return value
    return json.dumps(value, ensure_ascii=False)


# --------------------------------------------------------------------------
# The files
# --------------------------------------------------------------------------


def point_feature(properties, lon, lat):
    """A GeoJSON Point feature."""
    return {"type": "Feature", "properties": properties,
            "geometry": {"type": "Point", "coordinates": [lon, lat]}}


def station_features():
    """GeoJSON features of every station, with zone and thresholds."""
    features = []
    for gauge in WATER_GAUGES + RAIN_GAUGES:
        kind = "water_level" if isinstance(gauge, WaterGauge) else "rainfall"
        props = {"id": gauge.id, "name": gauge.name, "name_zh": gauge.name_zh, "kind": kind}
        zone = zone_of(gauge.lon, gauge.lat)
        if zone:
            props["zone"] = zone
        if kind == "water_level":
            props["thresholds"] = {"yellow": gauge.yellow, "orange": gauge.orange,
                                   "red": gauge.red, "unit": gauge.unit}
        features.append(point_feature(props, gauge.lon, gauge.lat))
    return features


def zone_features():
    """GeoJSON features of the zones; zones with several parts are MultiPolygons."""
    features = []
    for zone in ZONES:
        polygons = [[closed_ccw(part)] for part in zone.parts]
        if len(polygons) == 1:
            geometry = {"type": "Polygon", "coordinates": polygons[0]}
        else:
            geometry = {"type": "MultiPolygon", "coordinates": polygons}
        props = {"id": zone.id, "name": zone.name, "name_zh": zone.name_zh, "risk": zone.risk}
        features.append({"type": "Feature", "properties": props, "geometry": geometry})
    return features


def river_features():
    """GeoJSON LineStrings of the river and its tributary."""
    rivers = (("R-QINGJIANG", "Qingjiang River", "清江", "river", QINGJIANG),
              ("R-SHAHE", "Shahe River", "沙河", "tributary", SHAHE))
    return [{"type": "Feature",
             "properties": {"id": rid, "name": name, "name_zh": name_zh, "kind": kind},
             "geometry": {"type": "LineString", "coordinates": [[x, y] for x, y in line]}}
            for rid, name, name_zh, kind, line in rivers]


# Landmarks for the offline base map: where units are based, hospitals, the command centre, shelters.
LANDMARKS = (  # id, kind, name, name_zh, lat, lon (bases at the resources' own positions)
    ("LM-EOC", "command", "Emergency Operations Centre", "应急指挥中心", 30.598, 114.300),
    ("LM-WA-HQ", "depot", "Water Authority HQ", "水务局总部", 30.612, 114.284),
    ("LM-RIVERSIDE-DEPOT", "depot", "Riverside Depot", "滨江仓库", 30.552, 114.272),
    ("LM-SHAHE-PUMPS", "depot", "Shahe Pump Station", "沙河泵站", 30.522, 114.352),
    ("LM-MATERIALS-YARD", "depot", "Materials Yard", "物资堆场", 30.580, 114.262),
    ("LM-EAST-DEPOT", "depot", "East Depot", "东区仓库", 30.575, 114.400),
    ("LM-NANHU-DEPOT", "depot", "Nanhu Drainage Depot", "南湖排水站", 30.495, 114.245),
    ("LM-FIRE-BINJIANG", "fire_station", "Binjiang Fire Station", "滨江消防站", 30.565, 114.296),
    ("LM-FIRE-OLDTOWN", "fire_station", "Old Town Fire Station", "老城消防站", 30.632, 114.281),
    ("LM-FIRE-SHAHE", "fire_station", "Shahe Fire Station", "沙河消防站", 30.515, 114.362),
    ("LM-FIRE-BEIGANG", "fire_station", "Beigang Fire Station", "北港消防站", 30.660, 114.420),
    ("LM-HOSP-CENTRAL", "hospital", "City Central Hospital", "市中心医院", 30.622, 114.268),
    ("LM-HOSP-EASTHILLS", "hospital", "East Hills Hospital", "东山医院", 30.585, 114.425),
    ("LM-CLINIC-SHAHE", "hospital", "Shahe Clinic", "沙河卫生院", 30.500, 114.392),
    ("LM-CLINIC-NANHU", "hospital", "Nanhu Clinic", "南湖卫生院", 30.488, 114.225),
    ("LM-POLICE-BINJIANG", "police", "Binjiang Police Station", "滨江派出所", 30.545, 114.268),
    ("LM-POLICE-OLDTOWN", "police", "Old Town Police Station", "老城派出所", 30.640, 114.292),
    ("LM-POLICE-SHAHE", "police", "Shahe Police Station", "沙河派出所", 30.508, 114.380),
    ("LM-SHELTER-NO1", "shelter", "No. 1 Middle School (shelter)", "第一中学（避难所）", 30.618, 114.318),
    ("LM-SHELTER-STADIUM", "shelter", "City Stadium (shelter)", "市体育馆（避难所）", 30.560, 114.330),
    ("LM-SHELTER-EAST", "shelter", "East Hills Community Centre (shelter)", "东山社区中心（避难所）", 30.598, 114.438),
)


def landmark_features():
    """GeoJSON Points of the landmarks, with their names in English and Chinese, for the base map."""
    return [{"type": "Feature",
             "properties": {"id": lid, "kind": kind, "name": name, "name_zh": name_zh},
             "geometry": {"type": "Point", "coordinates": [lon, lat]}}
            for lid, kind, name, name_zh, lat, lon in LANDMARKS]


def resource_rows():
    """Rows of resources.csv."""
    return [[rid, dept, rtype, name, f"{lat:.4f}", f"{lon:.4f}", status,
             "" if capacity is None else capacity]
            for rid, dept, rtype, name, lat, lon, status, capacity in RESOURCES]


def departments_yaml():
    """Text of departments.yaml."""
    lines = ["departments:"]
    for did, name, name_zh in DEPARTMENTS:
        lines += [f"  - id: {did}", f"    name: {yaml_str(name)}", f"    name_zh: {name_zh}"]
    return "\n".join(lines) + "\n"


# What the command centre and the fire service do during the sample, scripted so that a replay runs
# the whole loop without a browser (docs/dispatch.md): dispatches of the first alerts, the crews'
# reports, and two completions the sensors then judge: WL-017 keeps rising after its crew reports
# the embankment raised (the task is reopened), WL-016 falls back below its levels (verified).
ACTIONS = (  # at, type, rule, subject, then for task_status: department, status and an optional note
    ("11h30m", "dispatch", "incident-in-risk-zone", "INC-002"),
    ("11h40m", "task_status", "incident-in-risk-zone", "INC-002", "fire_rescue", "en_route", "boat on its way"),
    ("11h45m", "task_status", "incident-in-risk-zone", "INC-002", "medical", "acknowledged"),
    ("11h50m", "dispatch", "rapid-rise", "WL-017"),
    ("11h50m", "dispatch", "rapid-rise", "WL-016"),
    ("12h00m", "task_status", "rapid-rise", "WL-017", "fire_rescue", "acknowledged"),
    ("12h15m", "task_status", "rapid-rise", "WL-017", "fire_rescue", "on_scene", "sandbagging the embankment"),
    ("12h20m", "task_status", "rapid-rise", "WL-016", "fire_rescue", "on_scene"),
    ("12h30m", "task_status", "incident-in-risk-zone", "INC-002", "fire_rescue", "on_scene", "4 people off a roof"),
    ("12h45m", "task_status", "rapid-rise", "WL-017", "fire_rescue", "completed", "embankment raised"),
    ("18h00m", "task_status", "rapid-rise", "WL-016", "fire_rescue", "completed", "pumping done"),
)


def actions_yaml():
    """The `actions:` of scenario.yaml (ACTIONS), one flow mapping a line."""
    lines = ["actions:"]
    for at, kind, rule, subject, *rest in ACTIONS:
        fields = {"at": at, "type": kind, "rule": rule, "subject": subject}
        fields.update(zip(("department", "status", "note"), rest, strict=False))  # the note is optional
        lines.append("  - {" + ", ".join(f"{k}: {yaml_str(v)}" for k, v in fields.items()) + "}")
    return "\n".join(lines) + "\n"


def scenario_yaml():
    """Text of the scenario's scenario.yaml."""
    lines = [
        "name: jiangcheng_flood",
        f"description: {yaml_str(SCENARIO_DESCRIPTION)}",
        f"description_zh: {yaml_str(SCENARIO_DESCRIPTION_ZH)}",
        f"start: {START.isoformat()}",
        "timezone: Asia/Shanghai",
        "stations: ../../stations.geojson",
        "zones: ../../zones.geojson",
        "resources: ../../resources.csv",
        "rules: ../../rules.yaml",
        "rivers: ../../rivers.geojson",
        "roads: ../../roads.geojson",
        "injects:",
    ]
    for inject in INJECTS:
        first = True
        for key, value in inject.items():
            prefix = "  - " if first else "    "
            lines.append(f"{prefix}{key}: {yaml_str(value)}")
            first = False
    return "\n".join(lines) + "\n" + actions_yaml() + objectives_yaml()


# What the exercise sets out to test, scored in the after-action report (docs/drills.md): one of each
# kind, on the sample's story (the incident alerts, the riverside gauges that reach red).
OBJECTIVES = (
    {"id": "O1", "kind": "dispatch_within", "rule": "incident-in-risk-zone", "within": "15m",
     "text": "Every incident alert in a high-risk zone is dispatched within 15 minutes",
     "text_zh": "高风险区每条险情预警在15分钟内派遣"},
    {"id": "O2", "kind": "dispatch_within", "rule": "river-stage", "subject": "WL-003", "within": "30m",
     "text": "The Riverside Park river alert is dispatched within 30 minutes",
     "text_zh": "滨江公园河道水位预警在30分钟内派遣"},
    {"id": "O3", "kind": "acknowledge_within", "department": "fire_rescue", "within": "10m",
     "text": "Fire and rescue acknowledge every task within 10 minutes", "text_zh": "消防救援10分钟内确认每项任务"},
    {"id": "O4", "kind": "acknowledge_within", "department": "medical", "within": "10m",
     "text": "Medical acknowledge every task within 10 minutes", "text_zh": "医疗急救10分钟内确认每项任务"},
    {"id": "O5", "kind": "on_scene_before_level", "resource_type": "pump", "subject": "WL-003", "level": "red",
     "text": "A pump is working at Riverside Park before the river reaches red",
     "text_zh": "滨江公园水位达红色前水泵到场"},
    {"id": "O6", "kind": "on_scene_before_level", "resource_type": "pump", "subject": "WL-005", "level": "red",
     "text": "A pump is working at the Bend Pumping Station before the river reaches red",
     "text_zh": "弯道泵站水位达红色前水泵到场"},
    {"id": "O7", "kind": "no_unacknowledged", "text": "No task is left unacknowledged at the end",
     "text_zh": "演练结束时无未确认任务"},
)


def objectives_yaml():
    """The `objectives:` block of scenario.yaml."""
    lines = ["objectives:"]
    for objective in OBJECTIVES:
        for i, (key, value) in enumerate(objective.items()):
            lines.append(f"{'  - ' if i == 0 else '    '}{key}: {yaml_str(value)}")
    return "\n".join(lines) + "\n"


def incident_rows():
    """Rows of the scenario's incidents.csv."""
    return [[iso_hours(hours), iid, category, f"{lat:.4f}", f"{lon:.4f}", severity, text, status]
            for hours, iid, category, lat, lon, severity, text, status in INCIDENTS]


def clean_readings(rng):
    """Every station's readings as blocks[step] = [[time, id, kind, value, unit], ...]."""
    series = []
    for gauge in WATER_GAUGES:
        series.append((gauge, "water_level", gauge.unit, water_levels(gauge, rng)))
    for gauge in RAIN_GAUGES:
        depth = rainfall_mm(gauge, rng)
        values = depth / MM_PER_INCH if gauge.unit == "in" else depth
        series.append((gauge, "rainfall", gauge.unit, values))
    blocks = []
    for step in range(STEPS):
        blocks.append([[iso(step), gauge.id, kind, fmt(values[step], unit), unit]
                       for gauge, kind, unit, values in series])
    return blocks


def find_row(blocks, station_id, step):
    """The row of a station at a step, looked up in that step's block."""
    return next(row for row in blocks[step] if row[1] == station_id and row[0] == iso(step))


def drop_silent_rows(blocks):
    """The silent station sends nothing between the SILENT_HOURS."""
    first, last = (h * 60 // STEP_MINUTES for h in SILENT_HOURS)
    for step in range(first, last):
        blocks[step] = [row for row in blocks[step] if row[1] != SILENT_STATION]


def add_value_faults(blocks):
    """Empty and non-numeric values, an unknown unit and an unknown station."""
    for station_id, step in EMPTY_VALUES:
        find_row(blocks, station_id, step)[3] = ""
    for station_id, step, text in NON_NUMERIC_VALUES:
        find_row(blocks, station_id, step)[3] = text
    station_id, step, unit = UNKNOWN_UNIT
    row = find_row(blocks, station_id, step)
    row[3], row[4] = f"{float(row[3]) / METRES_PER_FURLONG:.4f}", unit
    for station_id, step, value in UNKNOWN_STATION_ROWS:
        blocks[step].append([iso(step), station_id, "water_level", value, "m"])


def add_duplicates(blocks):
    """Exact copies of a few rows, right after the original."""
    for station_id, step in DUPLICATED:
        row = find_row(blocks, station_id, step)
        blocks[step].insert(blocks[step].index(row) + 1, list(row))


def shuffle_out_of_order(blocks, rng):
    """Move some quiet-period rows to after the rows 15 or 30 minutes later."""
    faulty = {(s, t) for s, t in EMPTY_VALUES + DUPLICATED}
    faulty |= {(s, t) for s, t, _ in NON_NUMERIC_VALUES}
    faulty.add(UNKNOWN_UNIT[:2])
    candidates = [(step, row[1]) for lo, hi in QUIET_STEP_RANGES for step in range(lo, hi)
                  for row in blocks[step] if (row[1], step) not in faulty]
    picks = rng.choice(len(candidates), OUT_OF_ORDER_COUNT, replace=False)
    for index in sorted(int(i) for i in picks):
        step, station_id = candidates[index]
        row = find_row(blocks, station_id, step)
        blocks[step].remove(row)
        blocks[step + int(rng.integers(1, 3))].append(row)


def reading_rows(rng):
    """Rows of the scenario's readings.csv, deliberate faults included."""
    blocks = clean_readings(rng)
    drop_silent_rows(blocks)
    add_value_faults(blocks)
    add_duplicates(blocks)
    shuffle_out_of_order(blocks, rng)
    return [row for block in blocks for row in block]


def main():
    """Write every file."""
    rng = np.random.default_rng(SEED)
    write_geojson(HERE / "stations.geojson", station_features())
    write_geojson(HERE / "zones.geojson", zone_features())
    write_geojson(HERE / "rivers.geojson", river_features())
    write_geojson(HERE / "roads.geojson", road_features())
    write_geojson(HERE / "landmarks.geojson", landmark_features())
    write_csv(HERE / "resources.csv",
              ["id", "department", "type", "name", "lat", "lon", "status", "capacity"],
              resource_rows())
    write_text(HERE / "departments.yaml", departments_yaml())
    write_text(HERE / "rules.yaml", RULES_YAML)
    write_text(SCENARIO_DIR / "scenario.yaml", scenario_yaml())
    write_csv(SCENARIO_DIR / "readings.csv", ["time", "station_id", "kind", "value", "unit"],
              reading_rows(rng))
    write_csv(SCENARIO_DIR / "incidents.csv",
              ["time", "incident_id", "category", "lat", "lon", "severity", "description", "status"],
              incident_rows())


if __name__ == "__main__":
    main()
