"""The bench's PNG plots: axes a reader can read."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from edgeexit.bench.plots import _energy_axis  # noqa: E402


def _axis(xs: list) -> tuple:
    fig, ax = plt.subplots()
    ax.plot(xs, [1] * len(xs))
    suffix = _energy_axis(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_xticklabels(minor=True) if t.get_text()]
    scale = ax.get_xscale()
    plt.close(fig)
    return suffix, scale, labels


def test_energy_axis_is_linear_under_a_decade_and_plain_numbers_on_log():
    suffix, scale, labels = _axis([1.1, 1.5, 3.6])  # the demo's span: a log axis labelled only 2x10^0 and 3x10^0
    assert (suffix, scale) == ("", "linear") and len(labels) >= 4
    suffix, scale, labels = _axis([0.2, 5.0, 40.0])
    assert (suffix, scale) == (", log scale", "log")
    assert labels and all("^" not in l and "times" not in l for l in labels)  # plain mJ, not mathtext powers


def _bench_res(timeline_key: str = "timeline_cpu_khz") -> dict:
    arms = {a: {"exit_histogram": [5, 3, 2, 1]} for a in ("threshold@race", "predictive@planned", "eenet@race")}
    return {"simulated": True, "arms": arms, "pareto": {},
            timeline_key: {"threshold@race": [[1479000, 1479000], [921600]]}}


def _drawn(res: dict, tmp_path, monkeypatch) -> dict:
    """write_plots' figures by file name (kept open rather than closed)."""
    import edgeexit.bench.plots as plots
    from edgeexit.bench.plots import write_plots

    figs = {}
    real = plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda plt_, fig, path: (figs.__setitem__(Path(path).name, fig),
                                                                       real(plt_, fig, path)))
    monkeypatch.setattr(plt, "close", lambda fig=None: None)
    written = write_plots(res, tmp_path)
    assert set(written) == set(figs)
    return figs


def test_exit_histogram_groups_are_centred_on_their_exit_ticks(tmp_path, monkeypatch):
    # Audit defect: bars at e + i*width put every group right of its tick.
    ax = _drawn(_bench_res(), tmp_path, monkeypatch)["exit_histogram.png"].axes[0]
    bars = [(r.get_x() + r.get_width() / 2) for r in ax.patches]
    assert len(bars) == 3 * 4
    for e in range(4):
        group = [x for x in bars if abs(x - e) < 0.5]
        assert len(group) == 3 and sum(group) / 3 == pytest.approx(e)
    assert list(ax.get_xticks()) == [0, 1, 2, 3]
    monkeypatch.undo()
    plt.close("all")


def test_timeline_plots_from_the_unit_named_key_and_an_old_results_json(tmp_path, monkeypatch):
    assert "timeline.png" in _drawn(_bench_res("timeline_cpu_khz"), tmp_path, monkeypatch)
    assert "timeline.png" in _drawn(_bench_res("timeline"), tmp_path, monkeypatch)  # written before the rename
    monkeypatch.undo()
    plt.close("all")


def test_the_pareto_line_joins_only_non_dominated_points():
    from edgeexit.bench.plots import front

    pts = [{"energy_mj": e, "accuracy": a} for e, a in ((1.0, 0.90), (1.1, 0.89), (1.2, 0.95), (1.3, 0.95), (1.4, 0.96))]
    assert [(p["energy_mj"], p["accuracy"]) for p in front(pts)] == [(1.0, 0.90), (1.2, 0.95), (1.4, 0.96)]
    assert front([]) == []


def _pareto_res(full_mj: float) -> dict:
    res = _bench_res()
    res["pareto"] = {"threshold": [{"energy_mj": e, "accuracy": a} for e, a in ((1.1, 0.89), (1.3, 0.94), (1.5, 0.96))],
                     "full": [{"energy_mj": full_mj, "accuracy": 0.962}]}
    return res


def test_a_far_full_point_is_drawn_at_the_edge_with_its_energy(tmp_path, monkeypatch):
    # Reader review: full's star at 3.65 mJ squeezed every front into the left third of the axes.
    ax = _drawn(_pareto_res(3.65), tmp_path, monkeypatch)["pareto.png"].axes[0]
    handles, labels = ax.get_legend_handles_labels()
    assert "full (beyond the axis: 3.65 mJ)" in labels
    star = float(handles[labels.index("full (beyond the axis: 3.65 mJ)")].get_xdata()[0])
    others = [x for line in ax.get_lines() if line.get_color() != "C3" for x in line.get_xdata()]
    assert star > max(others) and star == ax.get_xlim()[1] < 2.0  # on the right spine, not on a tick inside
    assert any("full at 3.65 mJ" in t.get_text() for t in ax.texts)
    ax = _drawn(_pareto_res(1.6), tmp_path, monkeypatch)["pareto.png"].axes[0]  # near: drawn where it is
    assert "full" in ax.get_legend_handles_labels()[1] and not ax.texts
    assert any(1.6 in list(line.get_xdata()) for line in ax.get_lines())
    monkeypatch.undo()
    plt.close("all")


def test_the_timeline_marks_the_planners_re_solves(tmp_path, monkeypatch):
    res = _bench_res()
    res["timeline_cpu_khz"] = {"predictive@planned": [[403200, 403200]] * 40, "threshold@race": [[1479000]] * 40}
    res["timeline_solves"] = {"predictive@planned": [[8, False], [16, True], [32, False], [64, False]]}
    fig = _drawn(res, tmp_path, monkeypatch)["timeline.png"]
    axes = {ax.get_title(loc="left"): ax for ax in fig.axes}
    pred, race = axes["predictive@planned"], axes["threshold@race"]
    marks = [ln for ln in pred.get_lines() if ln.get_color() == "C3"]
    assert sorted((ln.get_xdata()[0], ln.get_linestyle()) for ln in marks) == [(8, ":"), (16, "-"), (32, ":")]
    assert not [ln for ln in race.get_lines() if ln.get_color() == "C3"]
    # results.json keeps 200 inferences and their solves; only the 100 drawn are marked
    res["timeline_cpu_khz"] = {"predictive@planned": [[403200]] * 200}
    res["timeline_solves"] = {"predictive@planned": [[8, False], [128, True]]}
    pred = _drawn(res, tmp_path, monkeypatch)["timeline.png"].axes[0]
    assert [ln.get_xdata()[0] for ln in pred.get_lines() if ln.get_color() == "C3"] == [8]
    assert pred.get_xlim()[1] < 110  # 0..99 and its margins; a mark at 128 widened it
    monkeypatch.undo()
    plt.close("all")
