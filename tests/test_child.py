"""The child-process runner, with real child processes: a result, progress, a structured error, a crash,
a cancel and a timeout each cross the process boundary as the caller expects."""

from __future__ import annotations

import os
import time

import pytest

from flair_viz.core import child
from flair_viz.core.errors import InvalidModel, Misconfigured, NotFound, UnknownModel, status_code
from tests import child_jobs

WHAT, FIX = "the test job", "see the test"


def test_result_round_trips_from_a_real_child():
    b = [3, 5, 8]
    out = child.run(child_jobs.add, {"a": 2, "b": b}, what=WHAT, fix=FIX)
    assert out == {"sum": 2 + sum(b), "pid": out["pid"]}
    assert out["pid"] != os.getpid()


def test_progress_reaches_the_parent_in_order():
    seen: list[dict] = []
    n = child.run(child_jobs.count, {"n": 4, "pause_s": 0.3}, what=WHAT, fix=FIX, progress=seen.append)
    assert n == 4
    steps = [d["i"] for d in seen]
    assert steps == sorted(set(steps)) and steps[-1] == 4  # polled: a step may be skipped, never reordered
    assert all(d["n"] == 4 and d["time"] > 0 for d in seen)


def test_an_error_is_raised_as_the_same_condition_with_its_problem_and_fix():
    with pytest.raises(UnknownModel) as info:
        child.run(child_jobs.fail, {"model_id": "ghost"}, what=WHAT, fix=FIX)
    expected = child_jobs.UnknownTestModel("ghost")
    assert type(info.value) is child_jobs.UnknownTestModel
    assert (info.value.problem, info.value.fix) == (expected.problem, expected.fix)
    assert status_code(info.value) == status_code(expected) == 404


def test_an_unknown_error_class_keeps_its_nearest_known_condition():
    err = child.rebuild({"classes": ["elsewhere.NoSuchModel", "flair_viz.core.errors.NotFound",
                                     "flair_viz.core.errors.FlairVizError"], "problem": "p", "fix": "f"},
                        WHAT, FIX, Misconfigured)
    assert type(err) is NotFound and (err.problem, err.fix) == ("p", "f")


def test_a_plain_exception_or_a_crash_is_the_callers_condition_naming_what_failed():
    with pytest.raises(InvalidModel) as info:
        child.run(child_jobs.fail_plain, {"text": "bad shape 3x4"}, what=WHAT, fix=FIX, crash=InvalidModel)
    assert info.value.problem == f"{WHAT} failed: ValueError: bad shape 3x4" and info.value.fix == FIX
    with pytest.raises(InvalidModel) as info:
        child.run(child_jobs.die, {"text": "native abort 1234"}, what=WHAT, fix=FIX, crash=InvalidModel)
    assert "native abort 1234" in info.value.problem  # from the log: the child wrote no result
    with pytest.raises(Misconfigured, match="not JSON serializable"):
        child.run(child_jobs.not_json, {}, what=WHAT, fix=FIX)


def test_cancel_unwinds_the_child_and_records_it(tmp_path):
    marker = tmp_path / "cleaned.txt"
    proc = child.start(child_jobs.wait_then_clean, {"marker": str(marker)}, tmp_path / "job", progress=True)
    for _ in range(300):
        if child.read_progress(tmp_path / "job"):
            break
        time.sleep(0.1)
    assert child.read_progress(tmp_path / "job")["state"] == "running" and child.alive(proc.pid, proc)
    child.cancel(proc.pid, proc)
    assert not child.alive(proc.pid, proc)
    assert marker.read_text() == "cleaned"  # its finally block ran
    assert child.outcome(tmp_path / "job") == {"cancelled": True}
    with pytest.raises(Misconfigured, match="was cancelled"):
        child.result(tmp_path / "job", what=WHAT, fix=FIX)


def test_a_child_past_its_timeout_is_stopped(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(Misconfigured, match="took longer than 1 s"):
        child.run(child_jobs.wait_then_clean, {"marker": str(tmp_path / "m")}, what=WHAT, fix=FIX,
                  progress=lambda doc: None, timeout=1)
    assert time.monotonic() - t0 < 40
    assert (tmp_path / "m").read_text() == "cleaned"


def test_only_module_level_functions_can_cross():
    def local() -> None:
        pass

    with pytest.raises(TypeError, match="not a module-level function"):
        child.target_name(local)
    assert child.target_name(child_jobs.add) == "tests.child_jobs:add"
