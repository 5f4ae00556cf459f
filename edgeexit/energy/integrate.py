"""Integration rules used by the meters. Pure functions over arrays; units are in the names."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from edgeexit.energy.reading import EnergyWindow

LINEAR_METHOD = (
    "trapezoid: power linearly interpolated between valid samples, integrated exactly over "
    "[t0, t1] (windows shorter than the sampling period get the interpolated power times the "
    "duration); held constant beyond the first/last sample"
)
BLOCK_METHOD = (
    "block sum: each instrument sample holds its power for one sample period; energy is the sum "
    "of power times the overlap of that period with [t0, t1]"
)


def piecewise_linear_energy_mj(
    t_s: Sequence[float], power_mw: Sequence[float], t0_s: float, t1_s: float
) -> float:
    """Exact integral over ``[t0_s, t1_s]`` of the linear interpolant through ``(t_s, power_mw)``.

    Beyond the first/last sample the power is held constant (``np.interp``'s behaviour). Units:
    mW * s = mJ. ``t_s`` must be sorted and non-empty.
    """
    ts = np.asarray(t_s, dtype=np.float64)
    ps = np.asarray(power_mw, dtype=np.float64)
    if t1_s <= t0_s:
        return 0.0
    inner = ts[(ts > t0_s) & (ts < t1_s)]
    knots = np.concatenate(([t0_s], inner, [t1_s]))
    values = np.interp(knots, ts, ps)
    # Trapezoids between knots are exact because the interpolant is linear between them.
    return float(np.sum(0.5 * (values[1:] + values[:-1]) * np.diff(knots)))


def block_energy_mj(
    start_s: float, period_s: float, power_mw: np.ndarray, t0_s: float, t1_s: float
) -> Tuple[float, float, int]:
    """Energy of a uniformly sampled block over ``[t0_s, t1_s]``.

    Sample ``k`` covers ``[start_s + k*period_s, start_s + (k+1)*period_s)``. Non-finite samples
    are skipped. Returns ``(energy_mj, covered_s, n_samples)`` where ``covered_s`` is the part of
    the window covered by good samples.
    """
    n = len(power_mw)
    if n == 0 or t1_s <= t0_s:
        return 0.0, 0.0, 0
    k0 = max(0, int(np.floor((t0_s - start_s) / period_s)) - 1)
    k1 = min(n, int(np.ceil((t1_s - start_s) / period_s)) + 1)
    if k1 <= k0:
        return 0.0, 0.0, 0
    k = np.arange(k0, k1)
    lo = np.maximum(start_s + k * period_s, t0_s)
    hi = np.minimum(start_s + (k + 1) * period_s, t1_s)
    overlap = np.clip(hi - lo, 0.0, None)
    p = np.asarray(power_mw[k0:k1], dtype=np.float64)
    good = np.isfinite(p) & (overlap > 0)
    return (
        float(np.sum(p[good] * overlap[good])),
        float(np.sum(overlap[good])),
        int(np.count_nonzero(good)),
    )


def covered_window(
    energy_mj: float,
    covered_s: float,
    n_samples: int,
    t0_s: float,
    t1_s: float,
    min_coverage: float,
) -> Tuple[float, float, bool]:
    """Turn a block sum into ``(energy_mj, mean_power_mw, valid)`` for the whole window.

    Gaps (missing or non-finite samples) are filled at the window's mean power; the window is
    valid only if good samples cover at least ``min_coverage`` of it.
    """
    duration_s = t1_s - t0_s
    if duration_s <= 0:
        return 0.0, 0.0, n_samples > 0
    if covered_s <= 0 or covered_s < min_coverage * duration_s:
        return 0.0, 0.0, False
    mean_mw = energy_mj / covered_s
    return mean_mw * duration_s, mean_mw, True


def block_window(
    energy_mj: float, covered_s: float, n_samples: int, t0_s: float, t1_s: float, min_coverage: float,
    source: str, basis: str,
) -> "EnergyWindow":
    """The :class:`EnergyWindow` of a Joulescope block sum (live stream or JLS recording alike)."""
    from edgeexit.energy.reading import EnergyWindow

    energy, mean_mw, valid = covered_window(energy_mj, covered_s, n_samples, t0_s, t1_s, min_coverage)
    return EnergyWindow(
        energy_mj=energy, mean_power_mw=mean_mw, n_samples=n_samples, method=BLOCK_METHOD, valid=valid,
        t0_s=t0_s, t1_s=t1_s, total_basis=basis, source=source,
        rails_energy_mj={"joulescope": energy} if valid else {},
    )
