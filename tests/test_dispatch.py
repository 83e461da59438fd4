"""Dispatch, department tasks, operator actions, audit and the acknowledgement timer, on a real Redis."""

from __future__ import annotations

import threading

import orjson
import pytest
from rq import Queue, SimpleWorker

from command.errors import CommandError, NotFound
from command.keys import RQ_QUEUE, Keys
from command.models import Resource
from command.ops.dispatch import (
    AlreadyDispatched,
    alert_action,
    department_tasks,
    dispatch,
    flag_unacknowledged,
    get_task,
    update_task,
)
from command.ops.jobs import check_acknowledgement
from command.publish.views import alert_queue, current_recommendations
from command.scenarios.replay import run_replay
from command.trust import audit

from .conftest import SCENARIOS

MIN = 60_000


@pytest.fixture
def drill(r):
    """The zone-incident scenario replayed: I4 and INJ-1 open, each with a recommendation."""
    res = run_replay(r, SCENARIOS / "rule_zone_incident")
    keys = Keys(res.namespace)
    alerts = {orjson.loads(r.get(keys.alert(fp.decode())))["subject"]: orjson.loads(r.get(keys.alert(fp.decode())))
              for fp in r.zrange(keys.alerts_open, 0, -1)}
    return keys, alerts


def resource(r, keys, rid) -> Resource:
    return Resource.model_validate_json(r.hget(keys.resources, rid))


def test_dispatch_marks_resources_and_creates_a_task_per_department(r, drill):
    keys, alerts = drill
    a = alerts["I4"]
    d = dispatch(r, keys, fingerprint=a["fingerprint"], level="red", resource_ids=["B1", "A1"], operator="op",
                 now=1000, ack_ms=10 * MIN)
    assert d.departments == ["fire_rescue", "medical"]
    assert resource(r, keys, "B1").status == "dispatched" and resource(r, keys, "A1").status == "dispatched"
    fire = department_tasks(r, keys, "fire_rescue")
    assert [(t.subject, t.resource_ids, t.status, t.ack_deadline) for t in fire] == [("I4", ["B1"], "assigned", 1000 + 10 * MIN)]
    assert department_tasks(r, keys, "police") == []
    assert [e["action"] for e in audit.entries(r, keys)][0] == "dispatch"


def test_double_dispatch_gives_one_and_says_who_won(r, drill):
    keys, alerts = drill
    fp = alerts["I4"]["fingerprint"]
    first = dispatch(r, keys, fingerprint=fp, level="red", resource_ids=["B1"], operator="alice", now=1000)
    second = dispatch(r, keys, fingerprint=fp, level="red", resource_ids=["B2"], operator="bob", now=1500)
    assert isinstance(second, AlreadyDispatched)
    assert (second.by, second.at, second.dispatch_id) == ("alice", 1000, first.id)
    assert resource(r, keys, "B2").status == "available"  # the loser sent nothing


def test_two_operators_at_the_same_instant_dispatch_once(r, drill, redis_url):
    from command.runtime.redis_client import client as redis_client

    keys, alerts = drill
    fp = alerts["I4"]["fingerprint"]
    barrier = threading.Barrier(8)
    results = []

    def operator(i):
        client = redis_client(redis_url)  # one server or a cluster, as every process builds it
        barrier.wait()
        try:
            results.append(dispatch(client, keys, fingerprint=fp, level="red", resource_ids=["B1", "A1"],
                                    operator=f"op{i}", now=1000 + i))
        except Exception as exc:  # noqa: BLE001 - every operator must get an answer, not an error
            results.append(exc)

    threads = [threading.Thread(target=operator, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [x for x in results if isinstance(x, Exception)]
    wins = [x for x in results if not isinstance(x, AlreadyDispatched)]
    assert len(wins) == 1
    assert all(x.by == wins[0].operator for x in results if isinstance(x, AlreadyDispatched))
    assert r.zcard(keys.dispatches_index) == 1
    assert [e["action"] for e in audit.entries(r, keys)].count("dispatch") == 1


def test_unavailable_or_unknown_resources_are_refused_with_a_reason(r, drill):
    keys, alerts = drill
    fp = alerts["I4"]["fingerprint"]
    with pytest.raises(CommandError, match="out of service|dispatched"):
        dispatch(r, keys, fingerprint=fp, level="red", resource_ids=["P3"], operator="op", now=1)
    with pytest.raises(CommandError, match="unknown resource ZZ"):
        dispatch(r, keys, fingerprint=fp, level="red", resource_ids=["ZZ"], operator="op", now=1)
    with pytest.raises(CommandError, match="choose at least one"):
        dispatch(r, keys, fingerprint=fp, level="red", resource_ids=[], operator="op", now=1)
    assert r.zcard(keys.dispatches_index) == 0 and r.xlen(keys.audit) == 0


def test_department_updates_its_task_and_never_another(r, drill):
    keys, alerts = drill
    d = dispatch(r, keys, fingerprint=alerts["I4"]["fingerprint"], level="red", resource_ids=["B1", "A1"],
                 operator="op", now=1000)
    fire_task = f"{d.id}-fire_rescue"
    # another department's task is answered as an unknown one (no oracle)
    with pytest.raises(NotFound, match=f"^unknown task {fire_task}$"):
        update_task(r, keys, task_id=fire_task, department="police", user="pol", status="acknowledged", now=2000)
    with pytest.raises(NotFound, match=f"^unknown task {fire_task}$"):
        get_task(r, keys, fire_task, "medical")
    t = update_task(r, keys, task_id=fire_task, department="fire_rescue", user="fire", status="on_scene", now=3000,
                    note="at the basement", people_assisted=4, lat=30.09, lon=114.09)
    assert t.status == "on_scene" and t.history[-1].people_assisted == 4
    boat = resource(r, keys, "B1")
    assert boat.status == "on_scene" and (boat.lat, boat.lon) == (30.09, 114.09)
    t = update_task(r, keys, task_id=fire_task, department="fire_rescue", user="fire", status="completed", now=4000)
    assert resource(r, keys, "B1").status == "available"  # back in service
    with pytest.raises(CommandError, match="completed cannot become"):
        update_task(r, keys, task_id=fire_task, department="fire_rescue", user="fire", status="on_scene", now=5000)


@pytest.mark.parametrize("kwargs,field", [
    ({"status": "sleeping"}, "status"),
    ({"status": "assigned"}, "status"),
    ({"status": "on_scene", "people_assisted": -1}, "people_assisted"),
    ({"status": "on_scene", "lat": 30.0}, "position"),
    ({"status": "on_scene", "lat": 95.0, "lon": 114.0}, "position"),
    ({"status": "on_scene", "note": "x" * 2001}, "note"),
])
def test_task_form_fields_are_checked_on_the_server(r, drill, kwargs, field):
    keys, alerts = drill
    d = dispatch(r, keys, fingerprint=alerts["I4"]["fingerprint"], level="red", resource_ids=["B1"], operator="op",
                 now=1000)
    with pytest.raises(CommandError) as exc:
        update_task(r, keys, task_id=f"{d.id}-fire_rescue", department="fire_rescue", user="fire", now=2000, **kwargs)
    assert exc.value.field == field
    assert get_task(r, keys, f"{d.id}-fire_rescue", "fire_rescue").status == "assigned"  # nothing half-written


def test_acknowledging_never_silences_and_resolving_needs_a_note(r, drill):
    keys, alerts = drill
    fp = alerts["I4"]["fingerprint"]
    alert_action(r, keys, fingerprint=fp, action="acknowledge", user="op", now=1, comment="seen")
    queue = {a["subject"]: a for a in alert_queue(r, keys)}
    assert "I4" in queue and queue["I4"]["notes"]["acknowledged_by"] == "op"
    with pytest.raises(CommandError, match="say why"):
        alert_action(r, keys, fingerprint=fp, action="resolve", user="op", now=2)
    alert_action(r, keys, fingerprint=fp, action="resolve", user="op", now=3, comment="false report")
    assert "I4" not in {a["subject"] for a in alert_queue(r, keys)}
    assert [e["action"] for e in audit.entries(r, keys)][:2] == ["alert_resolve", "alert_acknowledge"]


def test_stale_recommendation_is_made_again_from_what_is_available(r, drill):
    keys, alerts = drill
    # the operator sends INJ-1's boat (B2) to I4, with the one ambulance
    dispatch(r, keys, fingerprint=alerts["I4"]["fingerprint"], level="red", resource_ids=["B2", "A1"], operator="op",
             now=1)
    fresh = current_recommendations(r, keys, [alerts["INJ-1"]])[alerts["INJ-1"]["fingerprint"]]
    # INJ-1's recommendation was B2 (A1 held for another alert); B2 is gone now, so: B1, and no ambulance left
    assert [i["resource_id"] for i in fresh["items"]] == ["B1"]
    assert fresh["shortfall"] == [{"type": "ambulance", "wanted": 1, "found": 0}] and fresh["refreshed"]


def test_audit_chain_detects_tampering(r, drill):
    keys, alerts = drill
    for i, action in enumerate(("acknowledge", "escalate")):
        alert_action(r, keys, fingerprint=alerts["I4"]["fingerprint"], action=action, user="op", now=i)
    dispatch(r, keys, fingerprint=alerts["I4"]["fingerprint"], level="red", resource_ids=["B1"], operator="op", now=9)
    assert audit.verify(r, keys).ok and audit.verify(r, keys).entries == 3
    # rewrite the middle entry's body as an insider with Redis access might
    eid, fields = r.xrange(keys.audit)[1]
    body = orjson.loads(fields[b"body"])
    body["who"] = "someone-else"
    r.xdel(keys.audit, eid)
    r.xadd(keys.audit, {"prev": fields[b"prev"], "hash": fields[b"hash"], "body": orjson.dumps(body)}, id="9999999999999-0")
    v = audit.verify(r, keys)
    assert not v.ok and v.reason


def test_unacknowledged_task_is_flagged_on_the_namespace_clock(r, drill):
    keys, alerts = drill
    d = dispatch(r, keys, fingerprint=alerts["I4"]["fingerprint"], level="red", resource_ids=["B1"], operator="op",
                 now=1000, ack_ms=10 * MIN)
    tid = f"{d.id}-fire_rescue"
    queue = Queue(RQ_QUEUE, connection=r)
    # the drill's clock is before the deadline: the job looks again later rather than flagging
    r.set(keys.clock, 1000 + 5 * MIN)
    job = queue.enqueue(check_acknowledgement, keys.ns, tid)
    SimpleWorker([queue], connection=r).work(burst=True)
    assert job.return_value() == "waiting"
    assert len(queue.scheduled_job_registry) == 1
    assert get_task(r, keys, tid, None).flagged is None
    # the clock passes the deadline with no acknowledgement: flagged, audited, on the status stream
    r.set(keys.clock, 1000 + 11 * MIN)
    job = queue.enqueue(check_acknowledgement, keys.ns, tid)
    SimpleWorker([queue], connection=r).work(burst=True)
    assert job.return_value() == "flagged"
    assert get_task(r, keys, tid, None).flagged == "no acknowledgement after 11 min"
    assert r.xrevrange(keys.status_stream, count=1)[0][1][b"status"] == b"flagged"
    assert audit.entries(r, keys)[0]["action"] == "escalate_unacknowledged"
    # an answer clears the flag
    update_task(r, keys, task_id=tid, department="fire_rescue", user="fire", status="acknowledged", now=1000 + 12 * MIN)
    assert get_task(r, keys, tid, None).flagged is None
    assert not flag_unacknowledged(r, keys, tid, 1000 + 60 * MIN)


def test_without_a_namespace_clock_the_timer_waits_rather_than_read_the_wall_clock(r, drill):
    keys, alerts = drill
    d = dispatch(r, keys, fingerprint=alerts["I4"]["fingerprint"], level="red", resource_ids=["B1"], operator="op",
                 now=1000, ack_ms=10 * MIN)  # a deadline long past on the wall clock
    r.delete(keys.clock)  # e.g. live before its first tick
    queue = Queue(RQ_QUEUE, connection=r)
    job = queue.enqueue(check_acknowledgement, keys.ns, f"{d.id}-fire_rescue")
    SimpleWorker([queue], connection=r).work(burst=True)
    assert job.return_value() == "waiting"
    assert get_task(r, keys, f"{d.id}-fire_rescue", None).flagged is None


def test_refusals_are_the_domain_errors_with_their_messages(r, drill):
    from command import errors

    keys, alerts = drill
    fp = alerts["I4"]["fingerprint"]
    cases = [
        (errors.InvalidInput, "choose at least one resource", lambda: dispatch(
            r, keys, fingerprint=fp, level="red", resource_ids=[], operator="op", now=1)),
        (errors.NotFound, "unknown resource ZZ", lambda: dispatch(
            r, keys, fingerprint=fp, level="red", resource_ids=["ZZ"], operator="op", now=1)),
        (errors.NotFound, "unknown alert nope", lambda: dispatch(
            r, keys, fingerprint="nope", level="red", resource_ids=["B1"], operator="op", now=1)),
        (errors.Conflict, "is out of service, not available", lambda: dispatch(
            r, keys, fingerprint=fp, level="red", resource_ids=["P3"], operator="op", now=1)),
        (errors.NotFound, "unknown task t-1", lambda: get_task(r, keys, "t-1", None)),
        (errors.InvalidInput, "unknown action 'snooze'", lambda: alert_action(
            r, keys, fingerprint=fp, action="snooze", user="op", now=1)),
    ]
    for cls, message, call in cases:
        with pytest.raises(cls) as exc:
            call()
        assert message in str(exc.value) and isinstance(exc.value, CommandError)
    import command.ops.dispatch as dispatch_module
    import command.ops.jobs as jobs_module

    # one name for each: the aliases left from the reshaping are gone
    assert not hasattr(dispatch_module, "CommandError") and not hasattr(dispatch_module, "clock_of")
    assert not hasattr(jobs_module, "QUEUE")


def test_read_model_caches_stay_bounded_over_many_drills(r):
    from command.publish import views

    for cache in (views._STATIONS, views._RULES):
        cache.clear()
    import yaml

    from command.config import SAMPLE_DATA

    rules = orjson.dumps(yaml.safe_load((SAMPLE_DATA / "rules.yaml").read_text(encoding="utf-8")))
    for i in range(3000):
        keys = Keys(f"drill-x-{i:08x}")
        r.set(keys.rules, rules)
        views.station_index(r, keys)
        views._ruleset(r, keys)
    for cache in (views._STATIONS, views._RULES):
        assert len(cache) == cache.maxsize == views.CACHED_NAMESPACES
    # the most recently used namespaces are the ones kept
    assert views._STATIONS.get("drill-x-00000bb7") is not None and views._STATIONS.get("drill-x-00000000") is None
    assert views._STATIONS.pop("drill-x-00000bb7") is not None and len(views._STATIONS) == views.CACHED_NAMESPACES - 1


def test_a_drill_dispatch_never_touches_a_live_resource(r, drill):
    """Live and the drill hold the same unit B1: dispatching it in the drill leaves live's B1 available."""
    from command.scenarios.load import load_scenario
    from command.scenarios.namespaces import load_namespace

    keys, alerts = drill
    live = Keys("live")
    load_namespace(r, live, load_scenario(SCENARIOS / "rule_zone_incident"), mode="live")
    before = {k: v for k, v in r.hgetall(live.resources).items()}
    dispatch(r, keys, fingerprint=alerts["I4"]["fingerprint"], level="red", resource_ids=["B1", "A1"], operator="op",
             now=1)
    assert resource(r, keys, "B1").status == "dispatched"
    assert r.hgetall(live.resources) == before
    assert r.zcard(live.dispatches_index) == 0 and r.xlen(live.audit) == 0


def test_after_action_report_times_each_department(r, drill):
    from command.publish.report import (
        after_action,
        collect_alerts,
        collect_quarantine,
        collect_recommendations,
        render_html,
    )

    keys, alerts = drill
    d = dispatch(r, keys, fingerprint=alerts["I4"]["fingerprint"], level="red", resource_ids=["B1", "A1"],
                 operator="op", now=alerts["I4"]["opened_at"])
    t0 = d.created_at
    update_task(r, keys, task_id=f"{d.id}-fire_rescue", department="fire_rescue", user="fire", status="acknowledged",
                now=t0 + 4 * MIN)
    update_task(r, keys, task_id=f"{d.id}-fire_rescue", department="fire_rescue", user="fire", status="on_scene",
                now=t0 + 25 * MIN)
    alert_action(r, keys, fingerprint=alerts["I4"]["fingerprint"], action="acknowledge", user="op", now=t0 + MIN)
    rep = after_action(r, keys, collect_alerts(r, keys), collect_recommendations(r, keys), collect_quarantine(r, keys))
    fire = [t for t in rep["dispatches"] if t["department"] == "fire_rescue"][0]
    assert (fire["acknowledged_after"], fire["on_scene_after"], fire["completed_after"]) == ("4 min", "25 min", None)
    assert rep["departments"]["fire_rescue"]["acknowledged"] == "4 min"
    assert rep["departments"]["medical"] == {"tasks": 1}  # no answer from medical: it shows
    ack = [e for e in rep["timeline"] if e["event"] == "operator:acknowledge"]
    assert ack and ack[0]["t"] == t0 + MIN
    assert "Dispatches and department response" in render_html(rep)


def test_operator_notes_are_not_cap_messages(r, drill):
    from command.publish.cap import alert_messages

    keys, alerts = drill
    fp = alerts["I4"]["fingerprint"]
    before = len(alert_messages(r, keys)[fp])
    alert_action(r, keys, fingerprint=fp, action="acknowledge", user="op", now=1)
    alert_action(r, keys, fingerprint=fp, action="escalate", user="op", now=2)
    assert len(alert_messages(r, keys)[fp]) == before
