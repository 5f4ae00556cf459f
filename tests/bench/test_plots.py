"""The bench's PNG plots: axes a reader can read."""
from __future__ import annotations

import matplotlib

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
