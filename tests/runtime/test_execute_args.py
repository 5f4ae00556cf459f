"""execute() and the DVFS planner check their arguments as the CLI checks its options, with one-line edgeexit
errors before the board is touched; warnings reach stderr by default; the board model runs the runtime's threads."""
from __future__ import annotations

import math

import pytest

from edgeexit.dvfs import open_board
from edgeexit.errors import PolicyError
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
