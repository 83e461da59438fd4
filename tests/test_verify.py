from command.ops.verify import verify_completion

M = 60_000
BASE = dict(station="WL-017", completed_at=0, level_rank=2, thresholds=[3.0, 3.5, 4.0], alert_levels=[])


def test_a_rise_after_completion_reopens_the_task():
    v = verify_completion(**BASE, readings=[(0, 3.6), (20 * M, 3.63), (35 * M, 3.84)], now=40 * M)
    assert v.outcome == "reopened"
    assert v.reason == "sensors disagree: WL-017 rose 0.24 m in 35 min after completion"


def test_an_escalation_reopens_the_task():
    v = verify_completion(**{**BASE, "alert_levels": [(10 * M, 3)]}, readings=[(0, 3.6)], now=15 * M)
    assert v.outcome == "reopened" and "escalated" in v.reason


def test_falling_below_the_levels_verifies_it():
    v = verify_completion(**BASE, readings=[(0, 3.6), (30 * M, 3.2), (50 * M, 2.9)], now=55 * M)
    assert v.outcome == "verified"


def test_still_watching_then_unverified():
    assert verify_completion(**BASE, readings=[(0, 3.6), (10 * M, 3.6)], now=20 * M).outcome == "watching"
    assert verify_completion(**BASE, readings=[(0, 3.6), (10 * M, 3.6)], now=70 * M).outcome == "unverified"


# ---- the parts the engine's edge uses (command/engine/verification.py) ---------------------------------
def test_the_verdict_carries_the_time_of_what_decided_it():
    v = verify_completion(**BASE, readings=[(0, 3.6), (20 * M, 3.63), (35 * M, 3.84)], now=40 * M)
    assert v.at == 35 * M
    assert verify_completion(**BASE, readings=[(0, 3.6)], now=5 * M).at is None


def test_the_default_rise_is_a_tenth_of_the_smallest_gap_between_levels():
    from command.ops.verify import default_rise

    assert default_rise([3.0, 3.5, 4.0]) == 0.05
    assert abs(default_rise([2.0, 2.2, 3.0]) - 0.02) < 1e-12
    assert default_rise([5.0]) == 0.5  # one level: a tenth of its bound
    # with the default, 0.04 m is not enough, 0.06 m is
    assert verify_completion(**BASE, readings=[(0, 3.6), (5 * M, 3.64)], now=6 * M).outcome == "watching"
    assert verify_completion(**BASE, readings=[(0, 3.6), (5 * M, 3.66)], now=6 * M).outcome == "reopened"


def test_the_bounds_are_the_stations_own_else_the_rules():
    from command.ops.verify import level_bounds

    levels = ("yellow", "orange", "red")
    assert level_bounds(levels, {"red": 4.0, "yellow": 3.0, "orange": 3.5}, {"orange": 0.3}) == [3.0, 3.5, 4.0]
    assert level_bounds(levels, {}, {"orange": 0.3, "red": 0.6}) == [0.3, 0.6]
    assert level_bounds(levels, {}, None) == []


def test_the_first_event_decides_and_nothing_outside_the_window_counts():
    # fell below the levels first, then rose: verified (the task is decided at the first)
    v = verify_completion(**BASE, readings=[(0, 3.6), (10 * M, 2.9), (20 * M, 3.9)], now=25 * M)
    assert v.outcome == "verified" and v.at == 10 * M
    # a rise after the window (here 30 min) is not the work's fault
    v = verify_completion(**BASE, readings=[(0, 3.6), (40 * M, 3.9)], now=45 * M, within_ms=30 * M)
    assert v.outcome == "unverified"
    # readings from before the completion are only the baseline
    v = verify_completion(**BASE, readings=[(-20 * M, 3.0), (0, 3.6), (5 * M, 3.61)], now=6 * M, rise=0.1)
    assert v.outcome == "watching"


def test_the_rule_keys_are_parsed_and_checked():
    import pytest

    from command.rules import RuleError, parse_rules

    def rule(**extra):
        return parse_rules({"rules": [{"id": "r", "kind": "threshold", "above": "thresholds", **extra}]}).by_id("r")

    r = rule(verify_within="45m", verify_rise=0.2)
    assert (r.verify_within_ms, r.verify_rise) == (45 * M, 0.2)
    assert (rule().verify_within_ms, rule().verify_rise) == (None, None)  # the defaults: 1 h, a tenth of the gap
    for bad in ({"verify_within": "0m"}, {"verify_within": "soon"}, {"verify_rise": 0}, {"verify_rise": -1},
                {"verify_rise": "a lot"}, {"verify_rise": True}, {"verify_rise": float("nan")}):
        with pytest.raises(RuleError, match="verify_"):
            rule(**bad)
