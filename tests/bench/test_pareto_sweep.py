"""The bench's accuracy sweep replays each policy as the runtime runs it."""
from __future__ import annotations

import numpy as np
import pytest

from edgeexit.boards.config import load_board
from edgeexit.boards.profile import load_profile
from edgeexit.bench import core
from edgeexit.bundle import load_bundle
from edgeexit.calibration import collect
from edgeexit.offline import replay
from edgeexit.policies import make_policy
from edgeexit.runtime import Runtime
from edgeexit.sim.physics import BoardPhysics


def test_the_sweeps_eenet_point_is_the_runtimes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep built eenet from weights and thresholds alone: its start exit was lost, so the sweep ran
    (and charged) heads the runtime never runs, and scored the start exit on a chain it was not fitted on."""
    b = load_bundle()
    rt = Runtime(b)
    cal = collect(rt, b.split("calibration"))
    ev = b.split("evaluation")
    table = collect(rt, ev).table
    monkeypatch.setattr(core, "SWEEP_DROPS_PP", (0.25,))  # the shipped calibration's target
    physics = BoardPhysics(load_profile(load_board("jetson-nano")))
    out = core.pareto_sweep(rt, cal, table, ev.y, physics, b, 3.89, 3.89, policies=["eenet"])
    assert b.calibration["eenet"]["start_exit"] > 0  # the demo's chain starts past exit 0
    want = replay(rt, make_policy("eenet", b), table, ev.y)
    assert out["eenet"][0]["mean_macs"] == pytest.approx(float(np.mean(want.macs)))
