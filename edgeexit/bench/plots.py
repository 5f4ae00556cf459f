"""PNG plots of a bench result (matplotlib is an optional extra: `pip install matplotlib`)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, List, Optional

from edgeexit.bundle.fileio import replace_file
from edgeexit.errors import OutputError


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


TIMELINE_SHOWN = 100  # inferences the timeline draws (results.json keeps more)
OUT_DIR_FIX = "pass --out DIR naming a directory with room where edgeexit may write its results"


def save_figure(plt: Any, fig: Any, path: Path, fix: str = OUT_DIR_FIX) -> None:
    """Save ``fig`` as a PNG to ``path`` atomically (replace_file, as results.json and report.md) and close it:
    a full disk leaves the old plot (or none), never a truncated one, and fails in one line naming the file
    and ``fix`` instead of a bare OSError after the whole run."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=110)
    finally:
        plt.close(fig)
    replace_file(path, buf.getvalue(), lambda why: OutputError("cannot write {} ({}); {}".format(path, why, fix)))


def _energy_axis(ax: Any) -> str:
    """A log axis only where the points span a decade or more; its ticks in plain mJ either way (a log
    axis over less than a decade labels one or two ticks, in powers of ten)."""
    from matplotlib.ticker import FuncFormatter

    xs = [x for line in ax.get_lines() for x in line.get_xdata() if x > 0]
    if not xs or max(xs) < 10 * min(xs):
        return ""
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _pos: "{:g}".format(v))
    ax.xaxis.set_major_formatter(plain)
    if max(xs) < 100 * min(xs):  # over more decades, labelled minor ticks would crowd
        ax.xaxis.set_minor_formatter(plain)
    return ", log scale"


def front(points: List[Dict[str, float]]) -> List[Dict[str, float]]:
    """The non-dominated points, by energy: each more accurate than every cheaper one."""
    out: List[Dict[str, float]] = []
    for p in sorted(points, key=lambda p: (p["energy_mj"], -p["accuracy"])):
        if not out or p["accuracy"] > out[-1]["accuracy"]:
            out.append(p)
    return out


FAR_FACTOR = 1.5  # a policy with one point this far beyond every other policy's costliest is drawn at the edge


def _far_points(pareto: Dict[str, List[Dict[str, float]]]) -> Dict[str, Any]:
    """Single-point policies (``full``) far costlier than every other point, each with the energy at which to
    draw it (just past the others): drawn at its own energy it would squeeze every front into a corner."""
    out: Dict[str, Any] = {}
    for name, pts in pareto.items():
        rest = [p["energy_mj"] for other, ps in pareto.items() if other != name for p in ps]
        if len(pts) == 1 and rest and pts[0]["energy_mj"] > FAR_FACTOR * max(rest):
            out[name] = (1.08 * max(rest), pts[0])
    return out if len(out) < len(pareto) else {}


def _pareto_plot(plt: Any, pareto: Dict[str, List[Dict[str, float]]], tag: str, out: Path,
                 cpu_khz: Optional[int] = None) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    # fixed order and colours, so a results.json read back (keys sorted) plots as the run did
    styles = {"threshold": ("o", "-", "C0"), "predictive": ("x", "--", "C1"), "eenet": ("s", ":", "C2"),
              "full": ("*", "", "C3")}
    far = _far_points(pareto)
    for name in sorted(pareto, key=lambda n: (list(styles).index(n) if n in styles else len(styles), n)):
        pts = pareto[name]
        if not pts:
            continue
        marker, ls, colour = styles.get(name, ("o", "-", None))
        if name in far:  # on the right spine with its value, so it does not squeeze the fronts
            edge_mj, p = far[name]
            ax.plot([edge_mj], [100 * p["accuracy"]], marker=marker, linestyle="", color=colour, markersize=9,
                    clip_on=False, label="{} (beyond the axis: {:.3g} mJ)".format(name, p["energy_mj"]))
            ax.annotate("{} at {:.3g} mJ \u2192".format(name, p["energy_mj"]), (edge_mj, 100 * p["accuracy"]),
                        xytext=(-6, -12), textcoords="offset points", ha="right", fontsize=7, color=colour)
            continue
        # every point as a marker; the line only through the front (dominated points zig-zagged it)
        ax.plot([p["energy_mj"] for p in pts], [100 * p["accuracy"] for p in pts], marker=marker, linestyle="",
                color=colour, alpha=0.85, markersize=8 if name == "full" else 6, fillstyle="none" if name != "full" else "full")
        best = front(pts)
        ax.plot([p["energy_mj"] for p in best], [100 * p["accuracy"] for p in best], marker=marker, linestyle=ls,
                color=colour, label=name, alpha=0.85, markersize=8 if name == "full" else 6)
    if far:
        ax.set_xlim(right=max(edge for edge, _ in far.values()))  # the far points sit on the spine, not on a tick
    at = "{:g} MHz".format(cpu_khz / 1000.0) if cpu_khz else "the maximum clock"
    ax.set_xlabel("energy per inference with every policy at {}, mJ (board model{})".format(at, _energy_axis(ax)))
    ax.set_ylabel("top-1 accuracy on the evaluation split, %")
    ax.set_title("Accuracy vs energy as the accuracy target sweeps" + tag + "\nsame clock for every policy: "
                 "compares exit policies, not DVFS", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(plt, fig, out / "pareto.png")


def _mark_solves(ax: Any, solves: List[Any]) -> None:
    """A vertical line where the planner solved its future again (before that inference): dotted where the
    point inferences begin at stayed, solid where it moved."""
    for n, moved in solves:
        ax.axvline(n, color="C3", linewidth=0.9, linestyle="-" if moved else ":", alpha=0.8)
    if solves:
        ax.text(0.995, 0.95, "red: future re-solved (solid: start point moved)", transform=ax.transAxes, fontsize=6.5,
                ha="right", va="top", color="C3")


def bar_centres(n_groups: int, i: int, n_bars: int, width: float) -> List[float]:
    """Centres of bar i of n_bars side by side in each group, the group centred on its tick (0..n_groups-1)."""
    return [g + (i - (n_bars - 1) / 2.0) * width for g in range(n_groups)]


def write_plots(res: Dict[str, Any], out: Path) -> List[str]:
    """Pareto front, exit histogram and frequency timeline; returns the file names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tag = " (SIMULATED board)" if res["simulated"] else ""
    written = []

    pareto = res.get("pareto") or {}
    if any(pareto.values()):  # --no-sweep: no empty axes, and the report links no plot
        _pareto_plot(plt, pareto, tag, out, res.get("pareto_cpu_khz"))
        written.append("pareto.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    arms = [a for a in ("threshold@race", "predictive@planned", "eenet@race", "pe-heuristic@planned", "oracle@planned") if a in res["arms"]]
    n_exits = len(res["arms"][arms[0]]["exit_histogram"]) if arms else 0
    width = 0.8 / max(1, len(arms))
    for i, arm in enumerate(arms):
        h = res["arms"][arm]["exit_histogram"]
        ax.bar(bar_centres(n_exits, i, len(arms), width), h, width=width, label=arm)
    ax.set_xticks(range(n_exits))
    ax.set_xlabel("exit index")
    ax.set_ylabel("samples of {} (log scale; none drawn: 0)".format(res.get("n_samples", "all")))
    ax.set_yscale("log")
    ax.set_title("Where samples exit" + tag, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(plt, fig, out / "exit_histogram.png")
    written.append("exit_histogram.png")

    from edgeexit.bench.report import in_arm_order

    # "timeline" is the pre-rename key: a results.json written by an older edgeexit still plots
    raw = res.get("timeline_cpu_khz", res.get("timeline")) or {}
    timeline = {a: raw[a] for a in in_arm_order(raw) if raw[a]}
    solves = res.get("timeline_solves") or {}
    if timeline:
        fig, axes = plt.subplots(len(timeline), 1, figsize=(7.2, 1.6 + 1.3 * len(timeline)), sharex=True, sharey=True, squeeze=False)
        for ax, (arm, traces) in zip(axes[:, 0], timeline.items()):
            xs, ys = [], []
            for i, tr in enumerate(traces[:TIMELINE_SHOWN]):
                for j, f in enumerate(tr):
                    xs.append(i + j / max(1, len(tr)))
                    ys.append(f / 1000.0)
            ax.step(xs, ys, where="post", linewidth=1)
            _mark_solves(ax, [s for s in solves.get(arm, []) if s[0] < len(traces[:TIMELINE_SHOWN])])
            ax.set_ylabel("CPU clock, MHz", fontsize=8)
            ax.set_title(arm, fontsize=8, loc="left")
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("inference number (each inference's segments share its unit of the axis)")
        fig.suptitle("CPU operating point per segment, first {} inferences".format(TIMELINE_SHOWN) + tag, fontsize=9)
        fig.tight_layout()
        save_figure(plt, fig, out / "timeline.png")
        written.append("timeline.png")
    return written
