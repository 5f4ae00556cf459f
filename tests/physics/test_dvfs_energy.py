"""The issue's must-show on the simulated Jetson Nano, end to end through `edgeexit run`.

Energy per inference falls and latency rises as the pinned CPU frequency falls from the maximum, and
with idle power counted over a fixed period (idle at the lowest OPP until the period ends) the
energy-optimal operating point lies strictly inside the table.

Threads: 4 (all four A57 cores; the setting docs/energy.md recommends for board runs). With 4 busy cores the CPU's
V^2 f term outweighs the board floor (idle board + memory + GPU static, ~1.75 W), so slowing down
saves energy; with 1 busy core the floor dominates and racing to idle wins (checked below, so a
coefficient change that flips either regime is noticed).
"""
from __future__ import annotations

from typing import Dict, List

import pytest

from edgeexit.boards.config import load_board
from edgeexit.boards.profile import load_profile
from edgeexit.bundle import load_bundle
from edgeexit.sim.physics import BoardPhysics
from edgeexit.energy.windows import energy_per_period_mj
from tests.cli.helpers import edgeexit, json_out

BOARD = "jetson-nano"
THREADS = 4
# From the maximum down to the energy minimum of a single inference (see the module doc).
FALLING_KHZ = [1479000, 1224000, 1036800, 825600, 710400]
# Both table ends plus interior points, for the fixed-period optimum.
PERIOD_KHZ = [102000, 204000, 403200, 710400, 1036800, 1479000]
PERIOD_MS = 20.0


def _physics(threads: int = THREADS) -> BoardPhysics:
    return BoardPhysics(load_profile(load_board(BOARD)), threads=threads)


@pytest.fixture(scope="module")
def runs() -> Dict[int, dict]:
    out = {}
    for f in sorted(set(FALLING_KHZ + PERIOD_KHZ)):
        s = json_out(edgeexit("run", "--board", BOARD, "--simulate", "--cpu-khz", str(f), "--threads", str(THREADS),
                              "--policy", "full", "--limit", "10", "--json"))
        assert s["simulated"] is True and s["energy_source"] == "simulated" and s["latency_source"] == "simulated"
        assert s["cpu_khz"] == f
        out[f] = s
    return out


def test_energy_falls_and_latency_rises_as_frequency_falls(runs):
    lat = [runs[f]["mean_latency_ms"] for f in FALLING_KHZ]
    energy = [runs[f]["mean_energy_mj"] for f in FALLING_KHZ]
    assert all(b > a for a, b in zip(lat, lat[1:])), lat
    assert all(b < a for a, b in zip(energy, energy[1:])), energy
    # not a rounding effect: the slowest point listed saves more than 20% against the maximum
    assert energy[-1] < 0.8 * energy[0]


def _period_energy(runs: Dict[int, dict], f: int, idle_low_mw: float) -> float:
    s = runs[f]
    return energy_per_period_mj(s["mean_energy_mj"], s["mean_latency_ms"] / 1e3, idle_low_mw, PERIOD_MS / 1e3)


def test_energy_optimal_point_per_period_is_inside_the_table(runs):
    ph = _physics()
    lo, hi = ph.freqs_khz[0], ph.freqs_khz[-1]
    assert lo in PERIOD_KHZ and hi in PERIOD_KHZ
    idle_low = ph.idle_mw(lo)
    per = {f: _period_energy(runs, f, idle_low) for f in PERIOD_KHZ}
    best = min(per, key=per.get)
    assert lo < best < hi, per
    assert per[best] < per[lo] and per[best] < per[hi]


@pytest.mark.parametrize("period_ms", [5.0, 20.0, 100.0])
def test_model_period_optimum_inside_full_table(period_ms: float):
    """Over every OPP of the table (the model directly), for short and long periods alike."""
    ph = _physics()
    b = load_bundle(None)
    macs = [s.macs for s in b.blocks] + [b.exits[-1].macs]
    idle_low = ph.idle_mw(ph.freqs_khz[0])
    per = {}
    for f in ph.freqs_khz:
        t_s = sum(ph.segment_s(m, f) for m in macs)
        e = sum(ph.segment_energy_mj(m, f) for m in macs)
        per[f] = energy_per_period_mj(e, t_s, idle_low, period_ms / 1e3)
    best = min(per, key=per.get)
    assert ph.freqs_khz[0] < best < ph.freqs_khz[-1], per


@pytest.mark.parametrize("threads,max_is_cheapest", [(1, True), (4, False)])
def test_threads_decide_race_to_idle(threads: int, max_is_cheapest: bool):
    """Why the must-show uses 4 threads: one busy core cannot outweigh the board floor."""
    ph = _physics(threads)
    b = load_bundle(None)
    macs = [s.macs for s in b.blocks] + [b.exits[-1].macs]
    energy: List[float] = [sum(ph.segment_energy_mj(m, f) for m in macs) for f in ph.freqs_khz]
    assert (min(range(len(energy)), key=energy.__getitem__) == len(energy) - 1) is max_is_cheapest, energy
