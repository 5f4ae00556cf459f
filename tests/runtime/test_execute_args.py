"""execute() and the DVFS planner check their arguments as the CLI checks its options, with one-line edgeexit
errors before the board is touched; warnings reach stderr by default; the board model runs the runtime's threads."""
from __future__ import annotations

import math

import pytest

from edgeexit.dvfs import open_board
from edgeexit.errors import DvfsError, PolicyError
from edgeexit.execute import execute
from edgeexit.planner import DvfsPlanner
from edgeexit.policies import make_policy

pytestmark = pytest.mark.backend

BAD_MS = [math.nan, math.inf, 0.0, -5.0, 3600e3 + 1, "10", True]


def _samples(bundle):
    return bundle.split("evaluation").take(2)


@pytest.mark.parametrize("name", ["deadline_ms", "period_ms"])
@pytest.mark.parametrize("bad", BAD_MS)
def test_a_bad_duration_is_refused(bundle, rt, name, bad):
    pol = make_policy("threshold", bundle)
    want = r"^{}=.* is not a duration: give milliseconds above 0 and at most 3.6e\+06 \(finite\), or None".format(name)
    with pytest.raises(PolicyError, match=want):
        execute(bundle, rt, pol, _samples(bundle), **{name: bad})
    with open_board("jetson-nano", simulate=True) as session, pytest.raises(PolicyError, match=want):
        execute(bundle, rt, pol, _samples(bundle), session=session, dvfs="race", **{name: bad})
    with pytest.raises(PolicyError, match=want):  # the check comes first: nothing else is looked at
        DvfsPlanner("race", None, rt, pol, None, 0, **{name: bad})  # type: ignore[arg-type]


def test_a_deadline_past_the_period_is_refused(bundle, rt):
    pol = make_policy("threshold", bundle)
    want = r"^--deadline-ms 30 is longer than --period-ms 20: an inference must end before the next period starts"
    with open_board("jetson-nano", simulate=True) as session, pytest.raises(PolicyError, match=want):
        execute(bundle, rt, pol, _samples(bundle), session=session, dvfs="race", deadline_ms=30.0, period_ms=20.0)
    with pytest.raises(PolicyError, match=want):
        DvfsPlanner("race", None, rt, pol, None, 0, deadline_ms=30.0, period_ms=20.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("session_too", [False, True])
@pytest.mark.parametrize("dvfs, policy, why", [
    ("bogus", "threshold", r"^unknown --dvfs mode 'bogus'; use one of planned, race"),
    ("planned", "threshold", r"^--dvfs planned needs a policy that forecasts its exit"),
    ("worst-case", "threshold", r"^--dvfs worst-case picks the lowest clock that meets a deadline, and none was given"),
])
def test_a_dvfs_mode_that_cannot_plan_is_a_policy_error(bundle, rt, session_too, dvfs, policy, why):
    pol = make_policy(policy, bundle)
    if not session_too:  # checked whatever the session: it used to be ignored without one
        with pytest.raises(PolicyError, match=why):
            execute(bundle, rt, pol, _samples(bundle), dvfs=dvfs)
        return
    with open_board("jetson-nano", simulate=True) as session, pytest.raises(PolicyError, match=why):
        execute(bundle, rt, pol, _samples(bundle), session=session, dvfs=dvfs)


def test_dvfs_without_a_board_is_refused(bundle, rt):
    with pytest.raises(PolicyError, match=r"^dvfs='race' sets a board's clocks, and no board session was given"):
        execute(bundle, rt, make_policy("threshold", bundle), _samples(bundle), dvfs="race")


def test_execute_refuses_a_policy_name(bundle, rt):
    with pytest.raises(PolicyError, match="must be an ExitPolicy, not the name 'threshold'"):
        execute(bundle, rt, "threshold", _samples(bundle))  # type: ignore[arg-type]


def test_numpy_and_fraction_durations_are_plain_floats_in_records_and_summary(bundle, rt, tmp_path):
    # np.int64 from a sweep's np.arange reached the records: a recorded run died at its first record (TypeError)
    import json
    from fractions import Fraction

    import numpy as np

    from edgeexit.records import RecordWriter

    pol = make_policy("predictive", bundle)
    for i, (deadline, period) in enumerate([(np.float32(4.0), np.int64(10)), (Fraction(4), Fraction(10))]):
        path = tmp_path / "r{}.jsonl".format(i)
        with open_board("jetson-nano", simulate=True) as session, RecordWriter(path) as writer:
            ex = execute(bundle, rt, pol, _samples(bundle), session=session, dvfs="planned", deadline_ms=deadline,
                         period_ms=period, writer=writer)
        assert type(ex.summary["deadline_ms"]) is float and ex.summary["deadline_ms"] == 4.0
        json.dumps(ex.summary)
        assert [json.loads(line)["period_ms"] for line in path.read_text().splitlines()] == [10.0, 10.0]


def test_a_period_without_a_board_is_refused(bundle, rt):
    # it was dropped without a word and taken as the deadline
    with pytest.raises(PolicyError, match=r"^period_ms=10 needs a board session, which keeps the schedule"):
        execute(bundle, rt, make_policy("threshold", bundle), _samples(bundle), period_ms=10)


@pytest.mark.parametrize("meter, rate, why", [
    ("bogus", 200.0, r"^meter='bogus' is not a power meter; use one of auto, ina3221, pmic, joulescope, none$"),
    ("auto", -5, r"^meter_rate_hz=-5 is not a sampling rate: give Hz from 1 to 1e\+06$"),
    ("none", "200", r"^meter_rate_hz='200' is not a sampling rate"),
])
def test_a_bad_meter_is_refused_on_any_board(bundle, rt, meter, rate, why):
    # a simulated board only warned (and host-only said nothing): a script passing in CI failed on the board
    pol = make_policy("threshold", bundle)
    with pytest.raises(PolicyError, match=why):
        execute(bundle, rt, pol, _samples(bundle), meter=meter, meter_rate_hz=rate)
    with open_board("jetson-nano", simulate=True) as session, pytest.raises(PolicyError, match=why):
        execute(bundle, rt, pol, _samples(bundle), session=session, dvfs="race", meter=meter, meter_rate_hz=rate)


def test_wrong_objects_are_named_before_anything_runs(bundle, rt, tmp_path):
    from edgeexit.bundle import load_bundle
    from edgeexit.errors import BundleError, InterpreterError
    from edgeexit.runtime import Runtime

    pol = make_policy("threshold", bundle)
    s = _samples(bundle)
    cases = [
        (dict(runtime="rt"), r"^runtime must be an edgeexit.runtime.Runtime, not a str"),
        (dict(bundle="demo"), r"^bundle must be the loaded Bundle the runtime was built from"),
        (dict(session="jetson-nano"), r"^session must be an open board session, not a str: pass session=edgeexit."
                                      r"dvfs.open_board\('jetson-nano', simulate=True\)"),
        (dict(writer=str(tmp_path / "o.jsonl")), r"^writer must have a write\(record\) method"),
        (dict(on_progress=5), r"^on_progress must be callable"),
        (dict(profile=5), r"^profile must be the path of an `edgeexit profile` file, not a int"),
    ]
    for given, why in cases:
        args = dict(bundle=bundle, runtime=rt, policy=pol, samples=s)
        args.update(given)
        with pytest.raises(PolicyError, match=why):
            execute(**args)
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(InterpreterError, match=r"^Runtime needs a loaded Bundle, not a str; load one with"):
        Runtime("edgeexit/models/demo")  # type: ignore[arg-type]
    with pytest.raises(InterpreterError, match=r"^interpreter=5 is not a backend name"):
        Runtime(bundle, interpreter=5)  # type: ignore[arg-type]
    with pytest.raises(BundleError, match=r"^load_bundle takes a bundle's directory \(a str or Path\), not a int"):
        load_bundle(5)  # type: ignore[arg-type]
    with open_board("jetson-nano", simulate=True) as session:
        for bad in (None, 1.5e6, True):
            with pytest.raises(DvfsError, match=r"^--cpu-khz must be a whole number of kHz, 'min' or 'max'"):
                session.controller.set_cpu_khz(bad)  # type: ignore[arg-type]


def test_counts_are_per_run_and_warnings_go_where_the_run_says(bundle, rt):
    # A second run on one session reported the first one's writes; the controller's warnings went to stderr
    # whatever warn the run was given.
    pol = make_policy("predictive", bundle)
    s = bundle.split("evaluation").take(20)
    with open_board("jetson-agx-orin", simulate=True) as session:  # one of its CPU clusters is offline at boot
        heard = []
        race = execute(bundle, rt, pol, s, session=session, dvfs="race", warn=heard.append).summary
        assert race["sysfs_writes"] > 0 and any("offline" in w for w in heard), heard
        none = execute(bundle, rt, pol, s, session=session, dvfs="none", warn=heard.append).summary
        assert none["sysfs_writes"] == 0 and none["sysfs_writes_per_inference"] == 0.0


def test_the_governor_arm_on_a_pinned_session_stays_put_as_on_a_real_board(bundle, rt):
    pol = make_policy("predictive", bundle)
    s = bundle.split("evaluation").take(20)
    with open_board("jetson-nano", simulate=True) as session:
        fresh = execute(bundle, rt, pol, s, session=session, dvfs="governor", warn=lambda m: None)
        assert fresh.summary["governor_emulated"] == "schedutil"
    with open_board("jetson-nano", simulate=True) as session:
        execute(bundle, rt, pol, s, session=session, dvfs="race")
        heard = []
        ex = execute(bundle, rt, pol, s, session=session, dvfs="governor", warn=heard.append)
        assert "governor_emulated" not in ex.summary
        assert {r["cpu_khz"] for r in ex.records} == {session.controller.cpu_opps_khz()[-1]}
        assert any("pinned or runs a governor that does not follow the load" in w for w in heard), heard


@pytest.mark.parametrize("bad", [True, 1.0, "1"])
def test_a_thread_count_must_be_a_whole_number(bundle, rt, bad):
    # True and 1.0 passed as 1; "1" was told to build Runtime(bundle, num_threads='1'), itself refused
    with pytest.raises(PolicyError, match=r"^threads=.* is not a thread count; leave it out \(it follows the "
                                          r"Runtime's num_threads=1\)$"):
        execute(bundle, rt, make_policy("threshold", bundle), _samples(bundle), threads=bad)


def test_huge_numbers_the_same_bundle_by_another_path_and_a_failed_runs_writes(bundle, rt, tmp_path):
    import os
    import shutil

    from edgeexit.bundle import load_bundle
    from edgeexit.runtime import Runtime

    pol = make_policy("threshold", bundle)
    for kw in ({"deadline_ms": 10 ** 400}, {"meter_rate_hz": 10 ** 400}):  # a bare OverflowError
        with pytest.raises(PolicyError, match="is not a"):
            execute(bundle, rt, pol, _samples(bundle), **kw)
    shutil.copytree(str(bundle.root), str(tmp_path / "b"))
    here = os.getcwd()
    os.chdir(str(tmp_path))
    try:
        rel = load_bundle("b")
        with Runtime(rel) as own:  # the same bundle, relative and absolute: not "another bundle"
            execute(load_bundle(str(tmp_path / "b")), own, make_policy("threshold", rel), _samples(rel))
    finally:
        os.chdir(here)
    with open_board("jetson-nano", simulate=True) as session:
        def boom(n):
            raise RuntimeError("stop")
        with pytest.raises(RuntimeError):
            execute(bundle, rt, pol, _samples(bundle), session=session, dvfs="race", on_progress=boom)
        assert execute(bundle, rt, pol, _samples(bundle), session=session, dvfs="none").summary["sysfs_writes"] == 0
