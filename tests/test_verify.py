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
