"""The board model against the public power figures (benchmarks/physics_check.py; table in docs/energy.md)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def check() -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "physics_check.py"), "--json"],
                         capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr
    return {b["board"]: b for b in json.loads(out.stdout)["boards"]}


def _fig(check: dict, board: str, key: str) -> dict:
    return next(f for f in check[board]["figures"] if f["figure"] == key)


def test_every_board_is_checked(check):
    assert set(check) == {"jetson-agx-orin", "jetson-nano", "jetson-orin-nano", "jetson-tx2", "jetson-xavier-nx",
                          "raspberry-pi-4", "raspberry-pi-5"}
    for b in check.values():
        assert b["figures"], b["board"]
        assert 0 < b["idle_mw"] < b["cpu_busy_max_mw"]


def test_pi5_reproduces_idle_and_loaded_range(check):
    assert abs(_fig(check, "raspberry-pi-5", "idle_w")["rel_error"]) <= 0.02
    loaded = check["raspberry-pi-5"]["cpu_busy_max_mw"]
    assert 7900 <= loaded <= 9900  # Geekbench range [SBC21]


def test_pi4_within_ten_percent(check):
    for key in ("idle_w", "loaded_w"):
        assert abs(_fig(check, "raspberry-pi-4", key)["rel_error"]) <= 0.10


@pytest.mark.parametrize("board,key", [
    ("jetson-nano", "nvpmodel_maxn_budget_w"), ("jetson-nano", "nvpmodel_5w_budget_w"),
    ("jetson-orin-nano", "nvpmodel_7w_budget_w"), ("jetson-orin-nano", "nvpmodel_15w_budget_w"),
    ("jetson-orin-nano", "nvpmodel_25w_budget_w"), ("jetson-tx2", "maxq_budget_w"), ("jetson-tx2", "maxp_budget_w"),
    ("jetson-xavier-nx", "mode_15w_budget_w"), ("jetson-agx-orin", "mode_15w_budget_w"),
    ("jetson-agx-orin", "mode_30w_budget_w"), ("jetson-agx-orin", "mode_50w_budget_w"),
])
def test_jetson_mode_peaks_stay_inside_their_budgets(check, board: str, key: str):
    """A budget is a ceiling: the modelled peak of the mode is below it and not absurdly far below."""
    f = _fig(check, board, key)
    assert -0.60 <= f["rel_error"] <= 0.0, f


def test_xavier_nx_10w_mode_lacks_caps(check):
    """The profile's NX 10 W modes carry no CPU/GPU caps (not in the reference), so their modelled peak at
    full clocks exceeds 10 W: a data gap stated in docs/energy.md, caught here if it changes."""
    f = _fig(check, "jetson-xavier-nx", "mode_10w_budget_w")
    assert f["rel_error"] > 0
