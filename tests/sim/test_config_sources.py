"""Board facts the simulated trees are built from say where they come from (reference tags in
/work/shared/reference/boards-and-sysfs.md, or "assumption"), and claim no source that lacks them."""
from __future__ import annotations

from pathlib import Path
from typing import List

from edgeexit.boards.config import load_board

ROOT = Path(__file__).resolve().parents[2]


def _lines(rel: str) -> List[str]:
    return (ROOT / rel).read_text().splitlines()


def _line(rel: str, needle: str) -> str:
    hits = [ln for ln in _lines(rel) if ln.startswith(needle)]
    assert len(hits) == 1, (rel, needle, hits)
    return hits[0]


def test_nano_maxn_watts_are_not_claimed_from_the_nvpmodel_emulator() -> None:
    # [JS:nvp-emu] gives MAXN's cores and caps, no watts; 10 W is NVIDIA's public figure
    for needle in ("nvpmodel_maxn_budget_w", "budget_w = 10.0"):
        line = _line("firmware_profiles/jetson-nano.toml", needle)
        assert "assumption" in line and "V [JS:nvp-emu]" not in line


def test_orin_nano_7w_mode_says_its_values_are_the_jp5_ones() -> None:
    lines = _lines("firmware_profiles/jetson-orin-nano.toml")
    start = lines.index("id = 3")
    block = "\n".join(lines[start:start + 10])
    assert "[LOS]" in block and "assumption" in block and "JP5" in block


def test_tx2_gpu_paths_are_the_references() -> None:
    # the reference gives one TX2 devfreq path (O); a second, gpu.0 one had no source
    assert load_board("jetson-tx2").gpu.devfreq_paths == ["sys/devices/17000000.gp10b/devfreq/17000000.gp10b"]  # type: ignore[union-attr]


def test_nano_pmic_zone_type_names_its_source() -> None:
    lines = _lines("board_configs/jetson-nano.toml")
    i = lines.index('type = "PMIC-Die"')
    assert "cloud-atlas" in lines[i - 1] + lines[i - 2] and "[JS:temp]" in lines[i - 2]


def test_orin_nano_cpu_floor_cites_its_source() -> None:
    lines = [ln for ln in _lines("firmware_profiles/jetson-orin-nano.toml") if ln.startswith("cpu_min_khz")]
    modes = [ln for ln in _lines("firmware_profiles/jetson-orin-nano.toml") if ln == "[[nvpmodel.modes]]"]
    assert len(lines) == len(modes) and all("729600" in ln and "[LOS]" in ln for ln in lines)
