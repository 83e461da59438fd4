"""Dispatch by deadline in the sample replay (Redis): the engine plans over every open alert, on the
sample city's roads, with the closures its incidents make; the outputs say when to leave."""

from __future__ import annotations

import json

import orjson
import pytest

from command.engine.plan_inputs import read_plan_context
from command.engine.recommend import recommendation_stage
from command.keys import Keys
from command.publish.report import collect_recommendations, write_outputs
from command.rules import parse_rules
from command.scenarios.replay import run_replay
from command.timeutil import parse_time

from .conftest import SCENARIOS

SAMPLE = SCENARIOS / "jiangcheng_flood"
START = parse_time("2026-07-14T00:00:00+08:00")
H = 3_600_000


@pytest.fixture(scope="module")
def sample(redis_url):
    import redis

    r = redis.Redis.from_url(redis_url)
    res = run_replay(r, SAMPLE)
    yield r, Keys(res.namespace), collect_recommendations(r, Keys(res.namespace))
    r.close()


def _rapid_rise_at(recs, subject, t):
    """The rapid-rise recommendation of `subject` in force at `t` (the last one made by then)."""
    mine = [x for x in recs if x["subject"] == subject and x["rule"] == "rapid-rise" and x["created_at"] <= t]
    return mine[-1]


def test_wl016_and_wl017_no_longer_share_crew_3_at_1145(sample):
    _, _, recs = sample
    t = START + int(11.75 * H)
    made = [(x["subject"], [i["resource_id"] for i in x["items"]]) for x in recs
            if x["created_at"] == t and x["rule"] == "rapid-rise"]
    # they open at the same instant and are planned together: one recommendation each, no passing one
    assert sorted(s for s, _ in made) == ["WL-016", "WL-017"]
    ids = dict(made)
    assert ids["WL-016"] != ids["WL-017"]
    assert "FR-CREW-03" in ids["WL-016"] + ids["WL-017"]  # one of them has it; the other is told why
    without = "WL-016" if "FR-CREW-03" in ids["WL-017"] else "WL-017"
    rec = _rapid_rise_at(recs, without, t)
    assert rec["held"][0]["resource_id"] == "FR-CREW-03"
    assert "Rescue Crew 3 (Shahe) is held for" in rec["reason"]


def test_every_item_says_when_to_leave_and_goes_by_road(sample):
    _, _, recs = sample
    items = [i for x in recs for i in x["items"]]
    assert items and all(i["by_road"] for i in items)  # the whole city is on the road map
    assert all(i["arrive_at"] > 0 and i["travel_min"] > 0 and i["route_km"] >= i["distance_km"] * 0.9 for i in items)
    assert all(x["deadline"] is not None for x in recs)  # every sample rule that asks has respond_within
    late = [i for i in items if i["late_min"] > 0]
    assert late and all(i["margin_min"] < 0 and "after" in i["reason"] for i in late)
    bridges = {b for i in items for b in i["via"] if b.endswith("Bridge")}
    assert {"Shahe Bridge", "Jiangcheng Bridge"} <= bridges


def test_a_broken_boat_is_never_proposed_while_it_is_out_of_service(sample):
    _, _, recs = sample
    broken = [x for x in recs if START + 20 * H <= x["created_at"] < START + 36 * H]
    assert broken and not any(i["resource_id"] == "FR-BOAT-02" for x in broken for i in x["items"])


def test_the_engine_keeps_the_road_closures_of_the_incidents(sample):
    r, keys, _ = sample
    closures = {k.decode(): orjson.loads(v) for k, v in r.hgetall(keys.road_closures).items()}
    assert sorted(closures) == ["INC-001", "INC-007", "INC-010", "INC-014", "INJ-1"]
    assert closures["INJ-1"]["radius_m"] == 500 and closures["INJ-1"]["opened"] == START + 28 * H
    assert closures["INC-007"]["radius_m"] == 100 and closures["INC-007"]["closed"] is None


def test_the_read_model_context_plans_over_every_open_alert(sample):
    r, keys, recs = sample
    rs = parse_rules(orjson.loads(r.get(keys.rules)))
    ctx = read_plan_context(r, keys, rs, now=START + 40 * H)
    assert ctx.network is not None and ctx.tz == "Asia/Shanghai" and len(ctx.closures) == 5
    open_fps = {a["fingerprint"] for a in ctx.alerts}
    assert open_fps and set(ctx.recommendations) <= open_fps
    fresh = recommendation_stage([(a, rs.by_id(a["rule"])) for a in ctx.alerts], lambda: _resources(r, keys), ctx)
    assert fresh and all(x.created_at == START + 40 * H for x in fresh)
    used = [i.resource_id for x in fresh for i in x.items]
    assert len(used) == len(set(used))  # never one unit for two alerts


def _resources(r, keys):
    from command.models import Resource

    return [Resource.model_validate_json(v) for v in r.hvals(keys.resources)]


def test_the_outputs_give_times_as_iso_with_the_offset(sample, tmp_path):
    r, keys, _ = sample
    write_outputs(r, keys, tmp_path)
    line = json.loads((tmp_path / "recommendations.jsonl").read_text().splitlines()[0])
    assert line["deadline"].endswith("+08:00") and line["created_at"].endswith("+08:00")
    item = line["items"][0]
    assert item["arrive_at"].endswith("+08:00") and item["leave_by"].endswith("+08:00")
    assert item["deadline"] == line["deadline"]


def test_the_outcome_does_not_depend_on_the_batch_size(r):
    def final(ns):
        out = {}
        for x in collect_recommendations(r, Keys(ns)):
            out[x["fingerprint"]] = [i["resource_id"] for i in x["items"]]
        return out

    small = run_replay(r, SAMPLE, batch=50)
    big = run_replay(r, SAMPLE, batch=5000)
    assert final(small.namespace) == final(big.namespace)
