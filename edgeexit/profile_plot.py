"""A PNG of a profile: full-inference latency and energy against the CPU operating point, where the
energy curve's minimum (the operating point DVFS planning aims near) shows at a glance."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List


def plot_profile(data: Dict[str, Any], rows: List[Dict[str, Any]], path: Path) -> Path:
    """Write ``path`` from a profile and its :func:`~edgeexit.profiling.inference_table` rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mhz = [r["cpu_khz"] / 1000.0 for r in rows]
    ran = data.get("effective_cpu_khz") or data["cpu_opps_khz"]
    moved = [i for i, (f, e) in enumerate(zip(data["cpu_opps_khz"], ran)) if int(e) != int(f)]
    tag = " (SIMULATED board)" if data.get("simulated") else ""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 5.6), sharex=True)
    top.plot(mhz, [r["latency_ms"] for r in rows], marker="o", color="C0")
    top.set_ylabel("latency, ms ({})".format(data.get("latency_source", "?")))
    energy = [r["energy_mj"] for r in rows]
    if all(e is not None for e in energy):
        bottom.plot(mhz, energy, marker="o", color="C1")
        best = min(range(len(energy)), key=lambda i: (energy[i], mhz[i]))
        bottom.plot([mhz[best]], [energy[best]], marker="*", markersize=14, color="C3", linestyle="",
                    label="least energy: {:g} MHz, {:.3g} mJ".format(mhz[best], energy[best]))
        bottom.legend(fontsize=8)
    else:
        bottom.text(0.5, 0.5, "energy not measured (no power meter)", ha="center", va="center",
                    transform=bottom.transAxes)
    bottom.set_ylabel("energy, mJ ({})".format(data.get("energy_source") or "not measured"))
    for ax in (top, bottom):
        for i in moved:  # the firmware ran another clock: these points are not operating points of their own
            ax.axvspan(mhz[i] - 25, mhz[i] + 25, color="0.85", zorder=0)
        ax.grid(alpha=0.3)
    if moved:
        top.set_title("grey: requests that ran at another clock (read back)", fontsize=8, loc="left")
    bottom.set_xlabel("CPU operating point, MHz")
    fig.suptitle("Full inference (every block + final exit) of {} on {}{}".format(
        data.get("model", "?"), data.get("board", "?"), tag), fontsize=9)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)
    return Path(path)
