"""A PNG of a profile: full-inference latency and energy against the CPU operating point, where the
energy curve's minimum (the operating point DVFS planning aims near) shows at a glance."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from edgeexit.bench.plots import save_figure


def plot_profile(data: Dict[str, Any], rows: List[Dict[str, Any]], path: Path) -> Path:
    """Write ``path`` from a profile and its :func:`~edgeexit.profiling.inference_table` rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mhz = [r["cpu_khz"] / 1000.0 for r in rows]
    moved = ran_elsewhere(data)
    tag = " (SIMULATED board)" if data.get("simulated") else ""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.4, 6.0), sharex=True)
    top.plot(mhz, [r["latency_ms"] for r in rows], marker="o", color="C0")
    top.set_ylabel("latency, ms")
    # from 0: a clock that barely moves the latency (the Pi 5's, a few %) must not look like one that halves it
    top.set_ylim(bottom=0, top=1.08 * max([r["latency_ms"] for r in rows] + [0.0]) or None)
    energy = [r["energy_mj"] for r in rows]
    known = [i for i, e in enumerate(energy) if e is not None]
    if known:
        bottom.plot([mhz[i] for i in known], [energy[i] for i in known], marker="o", color="C1")
        best = least_energy_point(data, energy)
        bottom.plot([mhz[best]], [energy[best]], marker="*", markersize=14, color="C3", linestyle="",
                    label="least energy: {:g} MHz, {:.3g} mJ".format(mhz[best], energy[best]))
        bottom.legend(fontsize=8)
    missing = energy_gap(data, energy)
    if missing:
        bottom.text(0.5, 0.5 if not known else 0.92, missing, ha="center", va="center", fontsize=8,
                    transform=bottom.transAxes)
    bottom.set_ylabel("energy per inference, mJ\n(busy only, no idle)")
    for ax in (top, bottom):
        for i in moved:  # the firmware ran another clock: these points are not operating points of their own
            ax.axvspan(mhz[i] - 25, mhz[i] + 25, color="0.85", zorder=0)
        ax.grid(alpha=0.3)
    if moved:
        ran = data.get("effective_cpu_khz") or data["cpu_opps_khz"]
        clocks = sorted({int(ran[i]) / 1000.0 for i in moved})
        top.set_title("grey: requests that ran at {} MHz instead (read back)".format(
            "/".join("{:g}".format(c) for c in clocks)), fontsize=8, loc="left")
    bottom.set_xlabel("CPU operating point, MHz")
    # The sources can be long ("INA3221 VDD_IN ..."): a y-label that long runs into the other panel.
    threads = data.get("threads", 1)
    fig.suptitle("Full inference (every block + final exit) of {}\non {}{}, {} interpreter thread{}\nlatency: {}; "
                 "energy: {}".format(data.get("model", "?"), data.get("board", "?"), tag, threads,
                                     "" if threads == 1 else "s", data.get("latency_source", "?"),
        data.get("energy_source") or "not measured"), fontsize=9)
    fig.tight_layout()
    # atomic, like the profile beside it: a full disk after minutes of profiling leaves no truncated PNG
    save_figure(plt, fig, Path(path), "pass --plot FILE.png on a disk with room where edgeexit may write")
    return Path(path)


def ran_elsewhere(data: Dict[str, Any]) -> List[int]:
    """Indices of the profile's requests that the firmware ran at another clock (read back)."""
    ran = data.get("effective_cpu_khz") or data["cpu_opps_khz"]
    return [i for i, (f, e) in enumerate(zip(data["cpu_opps_khz"], ran)) if int(e) != int(f)]


def least_energy_point(data: Dict[str, Any], energy: List[Any]) -> Optional[int]:
    """The operating point with the least known energy, the lower clock on a tie; a request that ran at
    another clock is none (the Pi 5's requests under its 1.5 GHz floor tie with it)."""
    known = [i for i, e in enumerate(energy) if e is not None]
    own = [i for i in known if i not in ran_elsewhere(data)] or known
    return min(own, key=lambda i: (energy[i], data["cpu_opps_khz"][i])) if own else None


def energy_gap(data: Dict[str, Any], energy: List[Any]) -> str:
    """Why some (or all) clocks have no energy, or "" when every one has."""
    unknown = sum(e is None for e in energy)
    if not unknown:
        return ""
    if not data.get("energy_source"):
        return "energy not measured (no power meter)"
    return "energy unknown at {} of {} clocks: the meter gave no valid samples there (see the profile's notes)".format(
        unknown, len(energy))
