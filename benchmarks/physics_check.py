"""The board model's power against the public figures in each firmware profile.

    python benchmarks/physics_check.py            # table
    python benchmarks/physics_check.py --json     # one JSON object (used by tests/physics)

Per board, from ``firmware_profiles/<board>.toml`` through :class:`edgeexit.sim.physics.BoardPhysics`:

* ``idle_mw``: board power idle at the lowest CPU OPP (what an idle, headless board draws);
* ``cpu_busy_max_mw``: every core busy at the highest CPU OPP, GPU idle (a CPU-bound load such as
  Geekbench or ``edgeexit run --threads <cores>``);
* per nvpmodel mode with a power budget: the mode's peak, i.e. its online cores busy at its CPU cap,
  the GPU busy at its GPU cap (``gpu_ceff_pf * V^2 * f``, V linear in f between ``gpu_vmin_mv`` and
  ``gpu_vmax_mv``), memory active. A budget is a ceiling for the module, not a measurement, so the
  model's peak should come out below it but not far below.

Each public figure (``[power_model.public_figures]``) is matched to the modelled quantity it
describes: ``*idle*`` -> idle_mw, ``*loaded*`` -> cpu_busy_max_mw, ``*budget*`` -> the peak of the
nvpmodel mode with that budget (the largest such mode's peak when several share it). Relative error
= (model - figure) / figure.
"""
from __future__ import annotations

import argparse
import json
from typing import Any, Dict, List, Optional

from edgeexit.boards.config import BoardConfig, board_names, load_board
from edgeexit.boards.profile import FirmwareProfile, load_profile
from edgeexit.sim.physics import BoardPhysics


def _table_at_or_below(table: List[int], cap: Optional[int]) -> int:
    if cap is None:
        return table[-1]
    below = [f for f in table if f <= cap]
    return below[-1] if below else table[0]


def gpu_busy_mw(profile: FirmwareProfile, gpu_hz: Optional[int]) -> float:
    """Dynamic GPU power at ``gpu_hz`` (a table entry), all of the GPU busy. Units: mW."""
    pm = profile.power_model
    if profile.gpu is None or not pm.gpu_ceff_pf or gpu_hz is None:
        return 0.0
    table = profile.gpu.table.freqs
    vmin = pm.extra.get("gpu_vmin_mv", 1000.0)
    vmax = pm.extra.get("gpu_vmax_mv", 1000.0)
    v = (vmin + (vmax - vmin) * (gpu_hz - table[0]) / max(1, table[-1] - table[0])) / 1000.0
    return pm.gpu_ceff_pf * v * v * (gpu_hz / 1e6) / 1000.0


def mode_peak_mw(board: BoardConfig, profile: FirmwareProfile, cores: int, cpu_cap_khz: Optional[int],
                 gpu_cap_hz: Optional[int]) -> Dict[str, Any]:
    physics = BoardPhysics(profile, threads=cores)
    f = _table_at_or_below(physics.freqs_khz, cpu_cap_khz)
    gpu_hz = _table_at_or_below(profile.gpu.table.freqs, gpu_cap_hz) if profile.gpu is not None else None
    busy = physics.power(f, True).total_mw
    return {"cores": cores, "cpu_khz": f, "gpu_hz": gpu_hz, "peak_mw": busy + gpu_busy_mw(profile, gpu_hz)}


def check_board(name: str) -> Dict[str, Any]:
    board = load_board(name)
    profile = load_profile(board)
    cores = board.possible_cpus
    physics = BoardPhysics(profile, threads=cores)
    idle = physics.idle_mw(physics.freqs_khz[0])
    cpu_busy = physics.power(physics.freqs_khz[-1], True).total_mw
    modes = []
    for m in profile.nvpmodel_modes:
        entry = {"mode": m.name, "budget_w": m.budget_w}
        entry.update(mode_peak_mw(board, profile, m.online_cpus, m.cpu_max_khz, m.gpu_max_hz))
        modes.append(entry)
    figures = []
    for key, value in sorted(profile.power_model.public_figures.items()):
        figure_mw = float(value) * 1000.0
        if "idle" in key:
            model, what = idle, "idle, lowest OPP"
        elif "loaded" in key:
            model, what = cpu_busy, "{} cores busy at max OPP".format(cores)
        elif "budget" in key:
            same = [m for m in modes if m["budget_w"] is not None and abs(m["budget_w"] * 1000.0 - figure_mw) < 1.0]
            if not same:
                continue
            top = max(same, key=lambda m: m["peak_mw"])
            model, what = top["peak_mw"], "peak of nvpmodel {} ({} cores @ {} kHz{})".format(
                top["mode"], top["cores"], top["cpu_khz"],
                ", GPU @ {} MHz".format(top["gpu_hz"] // 1000000) if top["gpu_hz"] else "")
        else:
            continue
        figures.append({"figure": key, "public_mw": figure_mw, "model_mw": round(model, 1), "compares": what,
                        "rel_error": round((model - figure_mw) / figure_mw, 3)})
    return {"board": name, "cores": cores, "idle_mw": round(idle, 1), "cpu_busy_max_mw": round(cpu_busy, 1),
            "modes": modes, "figures": figures}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = ap.parse_args()
    results = [check_board(b) for b in board_names()]
    if args.json:
        print(json.dumps({"boards": results}, indent=1, sort_keys=True))
        return
    print("| board | model idle (W) | model all cores busy, max OPP (W) | public figure | figure (W) | model (W) | compares | error |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        for i, f in enumerate(r["figures"] or [{}]):
            head = [r["board"], "{:.2f}".format(r["idle_mw"] / 1000), "{:.2f}".format(r["cpu_busy_max_mw"] / 1000)] \
                if i == 0 else ["", "", ""]
            if f:
                tail = [f["figure"], "{:.2f}".format(f["public_mw"] / 1000), "{:.2f}".format(f["model_mw"] / 1000),
                        f["compares"], "{:+.0%}".format(f["rel_error"])]
            else:
                tail = ["(none)", "", "", "", ""]
            print("| " + " | ".join(head + tail) + " |")


if __name__ == "__main__":
    main()
