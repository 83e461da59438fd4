"""The engine holds off the cyclic garbage collector only while a batch is read, evaluated and
committed (command/engine/consumer.py `_batch_without_gc`), and never leaves it changed."""

from __future__ import annotations

import gc

from command.engine.consumer import Engine
from command.keys import Keys
from command.scenarios.replay import run_replay

from .conftest import SCENARIOS


def _engine_watching_gc(r, consumer: str) -> tuple[Engine, list[bool]]:
    """An engine over a published, not yet evaluated scenario, recording the collector's state at
    each reading it evaluates."""
    res = run_replay(r, SCENARIOS / "rule_threshold", run_engine=False)
    eng = Engine(r, Keys(res.namespace), consumer=consumer, batch=20)
    eng.start()
    seen: list[bool] = []
    for sh in eng.shards.values():
        ev = sh.evaluator
        evaluate = ev.reading

        def reading(*args, _evaluate=evaluate):
            seen.append(gc.isenabled())
            return _evaluate(*args)

        ev.reading = reading  # type: ignore[method-assign]
    return eng, seen


def test_the_collector_is_off_during_a_batch_and_on_again_after(r):
    assert gc.isenabled()
    eng, seen = _engine_watching_gc(r, "gc-on")
    try:
        assert eng.drain() > 0
    finally:
        eng.release()
    assert seen and not any(seen)  # every reading was evaluated with the collector held off
    assert gc.isenabled()  # and it runs again between batches and after


def test_a_collector_turned_off_by_the_caller_stays_off(r):
    eng, seen = _engine_watching_gc(r, "gc-off")
    gc.disable()
    try:
        assert eng.drain() > 0
        assert not gc.isenabled()
    finally:
        gc.enable()
        eng.release()
    assert seen and not any(seen)
