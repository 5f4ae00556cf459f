"""The bench's entry-forecast payoff compares predictive with and without its entry forecast, the head
forecaster reading the same block's features in both (the block calibration fitted it on)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from edgeexit.bench.core import entry_forecast_payoff
from edgeexit.boards.config import load_board
from edgeexit.boards.profile import load_profile
from edgeexit.bundle import load_bundle
from edgeexit.bundle.data import quantize_inputs
from edgeexit.offline import replay
from edgeexit.paths import demo_bundle_dir
from edgeexit.policies import make_policy
from edgeexit.policies.predictive import PredictivePolicy
from edgeexit.runtime import Runtime
from edgeexit.sim.physics import BoardPhysics


def test_payoff_keeps_the_head_forecasters_block(tmp_path: Path) -> None:
    # Audit defect: the policy "without" the entry forecast defaulted to exit 0's block, so a head MLP
    # fitted on block 1's channel means read block 0's. The demo's head forecaster is a lookup table,
    # which reads no block; drop it so the head MLP runs, as in bundles calibrated without a table. The
    # demo's risk weight keeps the head forecast from skipping heads (it only sizes DVFS work); risk 0
    # lets it jump, so the features it reads decide the MACs.
    root = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(root))
    cal_path = root / "calibration.json"
    cal = json.loads(cal_path.read_text())
    assert cal["predictive"]["entry_exit"] == 1 and cal["predictive"]["forecaster"]["use_block_features"]
    cal["predictive"]["table"] = None
    cal["predictive"]["risk"] = 0.0
    cal_path.write_text(json.dumps(cal))
    bundle = load_bundle(root)
    evalset = bundle.split("evaluation")
    with Runtime(bundle) as rt:
        table = rt.exit_table(quantize_inputs(evalset.x[:300], bundle.manifest.input), keep_block0=True)
        physics = BoardPhysics(load_profile(load_board("jetson-nano")), threads=1)
        got = entry_forecast_payoff(bundle, table, rt, physics, physics.f_max_khz, None)
        with_entry = make_policy("predictive", bundle)
        without = PredictivePolicy(with_entry.forecaster, with_entry.thresholds, with_entry.on_miss, 0.0,
                                   None, entry_exit=1)
        want = replay(rt, without, table).macs.mean() - replay(rt, with_entry, table).macs.mean()
        assert without.feature_block == rt.exit_blocks[1] != rt.exit_blocks[0]
    assert got["used"] and np.isclose(got["macs_saved_per_inference"], want)
