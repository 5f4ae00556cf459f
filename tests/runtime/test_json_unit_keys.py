"""Clock values in a run's JSON carry their unit in the key: ``thermal_events[].last_refused`` and
``not_honoured_writes[]`` say ``_khz`` for cpufreq and ``_hz`` for the GPU's devfreq."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeexit.boards.config import load_board
from edgeexit.bundle import load_bundle
from edgeexit.dvfs import open_board
from edgeexit.dvfs.controller import DvfsController
from edgeexit.execute import execute
from edgeexit.guards import ThermalGuard, check_honoured
from edgeexit.policies import make_policy
from edgeexit.runtime import Runtime
from edgeexit.sim.kernel import SimulatedKernel
from edgeexit.sim.sysfs import SimulatedSysfs

UNITLESS = {"domain", "source", "t_s"}  # names, paths and a time already suffixed


def _no_bare_clock_keys(d):
    for k in d:
        assert k in UNITLESS or k.endswith(("_khz", "_hz")), k
    assert "unit" not in d and "from" not in d and "to" not in d and "requested" not in d


def test_thermal_refusals_name_the_unit_of_their_domain(tmp_path: Path) -> None:
    k = SimulatedKernel.create(tmp_path / "t", load_board("jetson-nano"))
    guard = ThermalGuard(k.board, SimulatedSysfs(k.root, k), warn=lambda m: None)
    k.set_temp_mc("CPU-therm", 99000)
    ctl = DvfsController(k.board, SimulatedSysfs(k.root, k), None, guard=guard)
    cpu, gpu = ctl.cpus[0], ctl.gpu
    assert gpu is not None
    assert not guard.allow_raise(cpu.name, 102000, 1479000, cpu.unit)
    assert guard.events[0].last_refused == {"domain": cpu.name, "from_khz": 102000, "to_khz": 1479000}
    assert not guard.allow_raise(gpu.name, 76800000, 921600000, gpu.unit)
    assert guard.events[0].last_refused == {"domain": gpu.name, "from_hz": 76800000, "to_hz": 921600000}


def test_not_honoured_events_name_the_unit_of_their_domain() -> None:
    cpu = check_honoured("policy0", "khz", [100, 200, 300], 300, 100, "scaling_cur_freq").to_dict()
    assert (cpu["requested_khz"], cpu["allowed_khz"], cpu["effective_khz"]) == (300, [300], 100)
    _no_bare_clock_keys(cpu)
    gpu = check_honoured("gpu", "hz", [10, 20], 20, 10, "cur_freq").to_dict()
    assert (gpu["requested_hz"], gpu["allowed_hz"], gpu["effective_hz"]) == (20, [20], 10)
    _no_bare_clock_keys(gpu)


@pytest.mark.backend
def test_a_runs_summary_uses_unit_suffixed_keys(tmp_path: Path) -> None:
    k = SimulatedKernel.create(tmp_path / "t", load_board("jetson-nano"))
    b = load_bundle()
    with Runtime(b) as rt:
        with open_board("jetson-nano", sysfs_root=k.root) as session:
            ctl = session.controller
            opps = ctl.cpu_opps_khz()
            ctl.set_cpu_khz(opps[0])
            k.set_firmware_clock("policy0", cap_khz=opps[2])  # a cap the clock stays under
            ctl.set_cpu_khz(opps[4])
            k.set_temp_mc("CPU-therm", 99000)  # then hot: raises are refused
            ctl.set_cpu_khz("max")
            ex = execute(b, rt, make_policy("threshold", b), b.split("evaluation").take(2), session=session,
                         dvfs="none", warn=lambda m: None)
    summary = json.loads(json.dumps(ex.summary))
    (event,) = summary["thermal_events"]
    assert set(event["last_refused"]) == {"domain", "from_khz", "to_khz"}
    assert event["last_refused"]["to_khz"] == opps[-1]
    write = summary["not_honoured_writes"][0]
    _no_bare_clock_keys(write)
    assert write["requested_khz"] == opps[4] and write["effective_khz"] == opps[2]
