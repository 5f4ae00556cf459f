"""Joulescope JS220/JS110 as a power meter, through ``pyjoulescope_driver`` (optional extra).

The instrument streams power on ``<device>/s/p/!data``. Each message carries ``sample_id``
(undecimated counter, 2 MHz on the JS220), ``decimate_factor``, ``time_map{offset_time,
offset_counter, counter_rate}`` (the driver's estimate of host UTC time for the counter) and
``data`` (float32 W). Sample ``k`` of a message starts at counter ``sample_id + k *
decimate_factor``, i.e. at UTC ``offset_time + (counter - offset_counter) / counter_rate``; that
UTC time is mapped to the host monotonic clock with an offset ``time.time() - time.monotonic()``
taken when the meter opens (both clocks are injectable).

The time map follows the host's wall clock, which can step (NTP setting the clock of an RTC-less
Pi); the monotonic clock never does. The driver's filter (joulescope_driver
``src/time_map_filter.c``) moves its map in one jump, not necessarily when the wall clock stepped:
a forward step only shows once the older anchor points age out. So the offset is not re-read from
the wall clock; instead a message whose mapped start differs from where the previous message's map
puts the same counter value by more than ``STEP_TOLERANCE_S`` is a step, and the offset is moved by
that jump so the stream stays continuous on the monotonic clock. Smaller changes are the driver's
own refinements and are followed.

Energy per window is the block sum: every sample holds its power for ``decimate_factor /
counter_rate`` seconds and contributes power times its overlap with the window. The instrument
measures whatever it is wired in series with (normally the board's whole supply).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Deque, List, Optional

import numpy as np

from edgeexit.energy.integrate import block_energy_mj, block_window
from edgeexit.energy.meter import Clock, PowerMeter
from edgeexit.energy.reading import EnergyWindow, PowerReading
from edgeexit.energy.time64 import SECOND, as_time64, counter_to_host_s
from edgeexit.energy.windows import WindowedEnergySource
from edgeexit.errors import MeterError, SensorMissingError

POWER_TOPIC = "s/p/!data"
POWER_CTRL = "s/p/ctrl"
MODELS = ("js220", "js110")
BASIS = "external Joulescope in series with the board supply (whole board input as wired)"
DEFAULT_HISTORY_S = 120.0
# A time-map jump bigger than this is a wall-clock step (NTP steps are >= ~0.1 s), not a refinement of
# the driver's estimate (USB latency jitter, well under this).
STEP_TOLERANCE_S = 0.01


# Stream messages carry the driver's time map from pyjoulescope_driver 2.1 on (its binding; 2.0.x sends none).
DRIVER_NEEDED = "pyjoulescope_driver>=2.1"


def _open_default_driver() -> Any:
    try:
        import pyjoulescope_driver  # type: ignore[import-not-found]
    except ImportError:
        raise SensorMissingError(
            "The Joulescope backend needs pyjoulescope_driver: pip install 'pyjoulescope_driver>=2.1'."
        ) from None
    try:
        return pyjoulescope_driver.Driver()
    except RuntimeError as exc:  # the binding raises RuntimeError for every jsdrv error code but a timeout
        raise SensorMissingError(f"The Joulescope driver did not start ({exc}); reconnect the instrument and "
                                 "retry, or reinstall it: pip install -U 'pyjoulescope_driver>=2.1'.") from None


class _Chunk:
    """One ``s/p/!data`` message mapped to host time. Units: s, mW."""

    __slots__ = ("start_s", "period_s", "power_mw", "sample_id", "counter_rate")

    def __init__(self, start_s: float, period_s: float, power_mw: np.ndarray, sample_id: int = 0,
                 counter_rate: float = 0.0) -> None:
        self.start_s = start_s
        self.period_s = period_s
        self.power_mw = power_mw
        self.sample_id = sample_id
        self.counter_rate = counter_rate

    @property
    def end_s(self) -> float:
        return self.start_s + self.period_s * len(self.power_mw)


class JoulescopeMeter(PowerMeter, WindowedEnergySource):
    """Streams power from one Joulescope and integrates it per host-time window.

    ``driver`` is a ``pyjoulescope_driver.Driver`` (or an object with the same
    ``device_paths/open/publish/subscribe/unsubscribe/close`` methods); by default one is created.
    Raises :class:`SensorMissingError` when no instrument is attached. ``history_s``: how much of the
    stream is kept (s); a window older than that is invalid, so size it to the longest window or
    period measured (memory: 8 bytes per sample, 0.8 MB/s at 100 kHz).
    """

    name = "joulescope"

    def __init__(
        self,
        driver: Any = None,
        device_path: Optional[str] = None,
        sample_rate_hz: int = 100_000,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        history_s: float = DEFAULT_HISTORY_S,
        timeout_s: float = 2.0,
        data_wait_s: float = 0.5,
        min_coverage: float = 0.95,
    ) -> None:
        PowerMeter.__init__(self, clock)
        self._init_windows()
        if not (isinstance(history_s, (int, float)) and 0 < history_s < float("inf")):
            raise MeterError(f"Joulescope history_s must be a positive number of seconds, got {history_s!r}.")
        self._opened = False
        self._owns_driver = driver is None
        self.driver = driver if driver is not None else _open_default_driver()
        self.history_s = float(history_s)
        self.clock_steps = 0  # time-map jumps taken as wall-clock steps (see the module doc)
        self.data_wait_s = data_wait_s
        self.min_coverage = min_coverage
        self.total_basis = BASIS
        self._chunks: Deque[_Chunk] = deque()
        self._cond = threading.Condition()
        self.stream_error: Optional[str] = None  # set by the USB thread when messages cannot be read
        try:
            self.device_path = self._pick_device(device_path)
            self.model = self.device_path.split("/")[1]
            try:
                self.driver.open(self.device_path, "defaults", timeout=timeout_s)
            except TimeoutError:
                raise SensorMissingError(
                    f"Joulescope {self.device_path} did not answer within {timeout_s} s; reconnect "
                    "its USB cable and retry."
                ) from None
            except RuntimeError as exc:  # in use, no permission, USB I/O: jsdrv's other error codes
                raise SensorMissingError(self._failed(exc)) from None
            self._opened = True
            try:
                self._configure(sample_rate_hz)
                # POSIX minus monotonic: maps the driver's UTC estimate onto the host clock.
                self.host_offset_s = wall_clock() - clock()
                self._host_offset_t64 = as_time64(self.host_offset_s)
                self.driver.subscribe(f"{self.device_path}/{POWER_TOPIC}", ["pub"], self._on_data)
                self.driver.publish(f"{self.device_path}/{POWER_CTRL}", 1)
            except RuntimeError as exc:
                raise SensorMissingError(self._failed(exc)) from None
        except BaseException:
            self.close()
            raise
        self.source = f"Joulescope {self.model.upper()} {self.device_path} at {sample_rate_hz} Hz"

    # --- setup ------------------------------------------------------------------------------
    def _pick_device(self, device_path: Optional[str]) -> str:
        paths: List[str] = [str(p) for p in self.driver.device_paths()]
        joulescopes = [p for p in paths if p.count("/") == 2 and p.split("/")[1] in MODELS]
        if not joulescopes:
            raise SensorMissingError(
                "No Joulescope is attached (the driver lists no JS220/JS110). Plug the instrument in "
                "over USB, wire it in series with the board's supply, or choose another meter."
            )
        if device_path is None:
            return joulescopes[0]
        if device_path not in joulescopes:
            raise SensorMissingError(
                f"Joulescope {device_path!r} is not attached; attached: {', '.join(joulescopes)}."
            )
        return device_path

    def _failed(self, exc: Exception) -> str:
        return (f"Joulescope {self.device_path} could not be opened or set up ({exc}): close any other program "
                "using it (the Joulescope UI), check that this user may access it (the udev rules the Joulescope "
                "install adds), reconnect its USB cable and retry.")

    def _configure(self, sample_rate_hz: int) -> None:
        dev = self.device_path
        if self.model == "js220":  # both ranges auto, as the reference's JS220 setup
            self.driver.publish(f"{dev}/s/i/range/mode", "auto")
            self.driver.publish(f"{dev}/s/v/range/mode", "auto")
        else:
            self.driver.publish(f"{dev}/s/i/range/select", "auto")
            self.driver.publish(f"{dev}/s/v/range/select", "15 V")
        self.driver.publish(f"{dev}/h/fs", int(sample_rate_hz))

    # --- streaming --------------------------------------------------------------------------
    def _on_data(self, topic: str, value: Any) -> None:
        """Driver callback (USB thread): map one power message onto host time."""
        if "time_map" not in value or "decimate_factor" not in value:
            with self._cond:  # an older driver: say so where windows are read, not as a KeyError on its thread
                self.stream_error = (f"the installed pyjoulescope_driver streams power without a time map, which "
                                     f"edgeexit needs to place samples in time; upgrade it: pip install -U "
                                     f"'{DRIVER_NEEDED}'")
                self._cond.notify_all()
            return
        tm = value["time_map"]
        counter_rate = float(tm["counter_rate"])
        decimate = int(value["decimate_factor"])
        sample_id = int(value["sample_id"])
        power_mw = np.asarray(value["data"], dtype=np.float64) * 1000.0
        with self._cond:
            start_s = counter_to_host_s(
                sample_id, tm["offset_time"], tm["offset_counter"], counter_rate, self._host_offset_t64,
            )
            prev = self._chunks[-1] if self._chunks else None
            if prev is not None and prev.counter_rate > 0:
                # where the previous message's map puts this counter value (the counter never jumps)
                expected_s = prev.start_s + (sample_id - prev.sample_id) / prev.counter_rate
                jump_s = start_s - expected_s
                if abs(jump_s) > STEP_TOLERANCE_S:
                    self._host_offset_t64 += int(round(jump_s * SECOND))
                    self.host_offset_s += jump_s
                    self.clock_steps += 1
                    start_s = expected_s
            chunk = _Chunk(start_s, decimate / counter_rate, power_mw, sample_id, counter_rate)
            self._chunks.append(chunk)
            while self._chunks and self._chunks[0].end_s < chunk.end_s - self.history_s:
                self._chunks.popleft()
            self._cond.notify_all()

    def _data_end_s(self) -> float:
        return self._chunks[-1].end_s if self._chunks else float("-inf")

    # --- PowerMeter -------------------------------------------------------------------------
    def read(self) -> PowerReading:
        """Mean power of the most recent message (stamped at its middle, host time)."""
        with self._cond:
            last = self._chunks[-1] if self._chunks else None
        if last is None:
            return PowerReading(self.clock(), {}, None, BASIS, ["joulescope"])
        good = last.power_mw[np.isfinite(last.power_mw)]
        mid_s = 0.5 * (last.start_s + last.end_s)
        if len(good) == 0:
            return PowerReading(mid_s, {}, None, BASIS, ["joulescope"])
        mean_mw = float(np.mean(good))
        return PowerReading(mid_s, {"joulescope": mean_mw}, mean_mw, BASIS)

    def stream_energy(self) -> "JoulescopeMeter":
        """Window energy comes from the instrument's own samples and time map (see the module doc),
        never from ``read()``: that is one chunk's mean and reaches the host milliseconds late."""
        return self

    def close(self) -> None:
        """Stop streaming and release the instrument (errors on the way out are ignored)."""
        if self._opened:
            self._opened = False
            for call in (
                lambda: self.driver.publish(f"{self.device_path}/{POWER_CTRL}", 0),
                lambda: self.driver.unsubscribe(f"{self.device_path}/{POWER_TOPIC}", self._on_data),
                lambda: self.driver.close(self.device_path),
            ):
                try:
                    call()
                except Exception:  # noqa: BLE001 - best effort while shutting down
                    pass
        if self._owns_driver and getattr(self, "driver", None) is not None:
            try:
                self.driver.finalize()
            except Exception:  # noqa: BLE001
                pass
            self._owns_driver = False

    # --- windows ----------------------------------------------------------------------------
    def now_s(self) -> float:
        return self.clock()

    def energy_mj(self, t0_s: float, t1_s: float) -> EnergyWindow:
        """Energy over ``[t0_s, t1_s]`` (host monotonic s) by the block sum; see the module doc.

        Waits up to ``data_wait_s`` (real time) for the instrument's data to reach ``t1_s``, since
        USB delivery lags the host clock by some milliseconds.
        """
        if t1_s < t0_s:
            raise MeterError(f"Window end {t1_s} s is before its start {t0_s} s.")
        with self._cond:
            self._cond.wait_for(lambda: self._data_end_s() >= t1_s or self.stream_error is not None,
                                timeout=self.data_wait_s)
            if self.stream_error is not None:
                raise MeterError("Joulescope {}: {}".format(self.device_path, self.stream_error))
            chunks = [c for c in self._chunks if c.end_s > t0_s and c.start_s < t1_s]
        energy = covered = 0.0
        n = 0
        for c in chunks:
            e, cov, k = block_energy_mj(c.start_s, c.period_s, c.power_mw, t0_s, t1_s)
            energy += e
            covered += cov
            n += k
        return block_window(energy, covered, n, t0_s, t1_s, self.min_coverage, self.name, BASIS)

