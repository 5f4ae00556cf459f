"""Attribute energy in a Joulescope ``.jls`` recording to host-time inference windows, offline.

A recording made with the Joulescope UI or ``pyjoulescope_driver``'s ``Record`` holds the power
signal (``power``, W), or current (A) and voltage (V) from which power is computed, plus UTC
anchors for sample ids. Windows are host-clock seconds; ``host_offset_s`` converts them to UTC
(``time.time() - time.monotonic()`` captured on the host during the run; ``0.0`` if the windows
are already POSIX timestamps). Integration is the same block sum as the live meter: each sample
holds its power for one sample period and contributes power times its overlap with the window.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import math

import numpy as np

from edgeexit.energy.integrate import BLOCK_METHOD, block_energy_mj, block_window
from edgeexit.energy.reading import EnergyWindow
from edgeexit.energy.time64 import as_time64, to_host_s
from edgeexit.errors import MeterError

BASIS = "Joulescope recording (whole board input as wired)"
_FSR = 0  # pyjls SignalType.FSR


def _reader(path: Path) -> Any:
    try:
        import pyjls  # type: ignore[import-not-found]
    except ImportError:
        raise MeterError("Reading .jls files needs pyjls: pip install pyjls.") from None
    if not path.is_file():
        raise MeterError(f"Joulescope recording {path} does not exist; pass the .jls file path.")
    try:
        return pyjls.Reader(str(path))
    except Exception as exc:  # pyjls raises RuntimeError with a C error string
        raise MeterError(f"Cannot read Joulescope recording {path}: {exc}") from None


def _find(signals: Any, name: str, units: str) -> Optional[Any]:
    for sig in signals.values():
        if sig.signal_id != 0 and sig.signal_type == _FSR and sig.name == name and sig.units == units:
            return sig
    return None


class _PowerSignal:
    """Power in mW from a ``power`` signal, or from ``current`` * ``voltage``."""

    def __init__(self, reader: Any, path: Path) -> None:
        self.reader = reader
        power = _find(reader.signals, "power", "W")
        self.current = self.voltage = None
        if power is None:
            self.current = _find(reader.signals, "current", "A")
            self.voltage = _find(reader.signals, "voltage", "V")
            if self.current is None or self.voltage is None:
                names = [f"{s.name} ({s.units})" for s in reader.signals.values() if s.signal_id]
                raise MeterError(
                    f"{path} has no 'power' (W) signal nor 'current' (A) and 'voltage' (V) "
                    f"signals (it has: {', '.join(names) or 'none'}); record power or current+voltage."
                )
        self.anchor = power if power is not None else self.current
        self.length = int(self.anchor.length)
        if self.voltage is not None:
            # a recording stopped mid-stream can end its signals a chunk apart: read only where both are
            self.length = min(self.length, int(self.voltage.length))
        self.sample_rate_hz = float(self.anchor.sample_rate)

    def samples_mw(self, start: int, length: int) -> np.ndarray:
        sid = self.anchor.signal_id
        if self.current is None:
            return np.asarray(self.reader.fsr(sid, start, length), dtype=np.float64) * 1000.0
        i = np.asarray(self.reader.fsr(self.current.signal_id, start, length), dtype=np.float64)
        v = np.asarray(self.reader.fsr(self.voltage.signal_id, start, length), dtype=np.float64)
        return i * v * 1000.0

    def sample_id(self, t64: int) -> int:
        return int(self.reader.timestamp_to_sample_id(self.anchor.signal_id, t64))

    def time64(self, sample_id: int) -> int:
        return int(self.reader.sample_id_to_timestamp(self.anchor.signal_id, sample_id))


def jls_energy_windows(
    path: Path,
    windows: Sequence[Tuple[float, float]],
    host_offset_s: float = 0.0,
    min_coverage: float = 0.95,
) -> List[EnergyWindow]:
    """Energy of each ``(t0_s, t1_s)`` host-time window in the recording at ``path``.

    A window not covered (to ``min_coverage``) by the recording comes back ``valid=False``.
    Units: mJ, mW, s.
    """
    path = Path(path)
    reader = _reader(path)
    try:
        sig = _PowerSignal(reader, path)
        return [_window(sig, t0_s, t1_s, host_offset_s, min_coverage) for t0_s, t1_s in windows]
    except MeterError:
        raise
    except (RuntimeError, OSError) as exc:  # pyjls raises RuntimeError with a C error string
        raise MeterError(
            f"Cannot read Joulescope recording {path} ({exc}): the file is truncated or damaged; record "
            "the run again, stopping the recording only after the run has ended."
        ) from None
    finally:
        reader.close()


def _window(
    sig: _PowerSignal, t0_s: float, t1_s: float, host_offset_s: float, min_coverage: float
) -> EnergyWindow:
    if t1_s < t0_s:
        raise MeterError(f"Window end {t1_s} s is before its start {t0_s} s.")
    unknown = EnergyWindow(0.0, 0.0, 0, BLOCK_METHOD, False, t0_s, t1_s, BASIS, "joulescope-jls", {})
    if not all(math.isfinite(x) for x in (t0_s, t1_s, host_offset_s)):
        return unknown  # a window with no finite edges is not in any recording
    try:
        offset_t64 = as_time64(host_offset_s)
        s0 = sig.sample_id(as_time64(t0_s + host_offset_s))
        s1 = sig.sample_id(as_time64(t1_s + host_offset_s))
    except (OverflowError, ValueError):  # centuries away from the recording: pyjls cannot map it
        return unknown
    # Anchor on sample s0's exact UTC and take the local period from the file's own time map,
    # so slow drift between instrument and host clocks is followed. Host times are formed in
    # integer time64 first (see time64.to_host_s) so short windows keep their precision.
    anchor_s = to_host_s(sig.time64(s0), offset_t64)
    if s1 > s0:
        period_s = (to_host_s(sig.time64(s1), offset_t64) - anchor_s) / (s1 - s0)
    else:
        period_s = 1.0 / sig.sample_rate_hz
    lo = max(0, min(s0, s1) - 1)
    hi = min(sig.length, max(s0, s1) + 2)
    energy = covered = 0.0
    n = 0
    if hi > lo:
        p_mw = sig.samples_mw(lo, hi - lo)
        energy, covered, n = block_energy_mj(anchor_s + (lo - s0) * period_s, period_s, p_mw, t0_s, t1_s)
    return block_window(energy, covered, n, t0_s, t1_s, min_coverage, "joulescope-jls", BASIS)

