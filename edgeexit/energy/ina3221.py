"""INA3221 power monitors on Jetson boards, in both kernel layouts.

JetPack 4 (NVIDIA ``ina3221x`` IIO driver)::

    <root>/sys/bus/i2c/drivers/ina3221x/<bus>-00<addr>/iio:deviceN/
        rail_name_{0,1,2}   in_power{0,1,2}_input (mW)   in_voltage*_input (mV)   in_current*_input (mA)

JetPack 5+ (mainline ``ina3221`` hwmon driver)::

    <root>/sys/bus/i2c/drivers/ina3221/<bus>-00<addr>/hwmon/hwmonN/
        in{1,2,3}_label   in{1,2,3}_input (mV)   curr{1,2,3}_input (mA)   in7_label "sum of shunt voltages"
        (no power file: power = V * I)

``N`` in ``iio:deviceN``/``hwmonN`` changes across boots and driver reloads, so it is scanned, and
rails are matched by the label the kernel reports, not by position alone. ``NC`` channels are
skipped. The board total comes from the input rail when the board has one (VDD_IN / POM_5V_IN);
otherwise it is the sum of the rails no other measured rail feeds (``[power.fed_by]``), and ``total_basis``
says so. The meter reads plain files under
``root``, so a simulated tree is read exactly as a real one.
"""
from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from edgeexit.energy.meter import Clock, PowerMeter
from edgeexit.boards.config import NOT_CONNECTED, Ina3221Chip, PowerConfig, parse_power_table
from edgeexit.energy.reading import PowerReading
from edgeexit.energy.sysfs_values import read_number, read_text
from edgeexit.errors import MeterError, SensorMissingError

# A rail reading beyond this is garbage (a torn or corrupted read), not power: INA3221 tops out at
# 26 V on a 163.8 mV shunt, far below 1 kW on every Jetson module.
MAX_PLAUSIBLE_RAIL_MW = 1.0e6
# Zero load reads a little below zero: the INA3221's shunt offset voltage is up to +-80 uV (TI datasheet,
# outside the reference), +-16 mA on the 5 mOhm shunts assumed for the Jetsons (edgeexit/sim/kernel.py). So
# down to -20 mA (-100 mW at 5 V) is an idle or power-gated rail, read as 0; below that, a fault.
ZERO_LOAD_MA = 20.0
ZERO_LOAD_MW = 100.0
RELOCATE_INTERVAL_S = 1.0  # rescan for a renumbered hwmonN/iio:deviceN at most this often
# The slowest update_interval the hwmon driver reports: 3 channels x (8.244 + 8.244) ms conversions x 1024
# samples (it counts the averaging); beyond it, garbage.
MAX_UPDATE_INTERVAL_MS = 3 * 2 * 8.244 * 1024
# Trial reads at open: I2C reads fail transiently (EAGAIN, EIO), so one failure is not yet a dead rail.
OPEN_TRIES = 3
OPEN_RETRY_S = 0.02


@dataclass(frozen=True)
class RailFiles:
    """Where one rail's numbers live. ``power_path`` is set for IIO (mW), else V*I is used."""

    rail: str
    chip: str
    channel: int
    voltage_path: Path
    current_path: Path
    power_path: Optional[Path] = None

    def read_power_mw(self) -> Optional[float]:
        """Rail power (mW), or None for a failed, empty, NaN, negative or implausible read.

        Every configured rail is a supply rail that only draws power. The INA3221's shunt and bus registers are
        signed, so the driver can hand back a negative current or power. Within the shunt offset of zero
        (ZERO_LOAD_MA) that is an idle or power-gated rail, read as 0; further below it is a sensor fault (a
        miswired or damaged shunt, a corrupted read), not power flowing back: the rail counts as failed and
        its window's energy as unknown (the sampler warns), rather than a negative power lowering the total."""
        if self.power_path is not None and self.power_path.exists():
            power_mw = read_number(self.power_path)
            if power_mw is not None and -ZERO_LOAD_MW <= power_mw < 0:
                power_mw = 0.0
        else:
            voltage_mv = read_number(self.voltage_path)
            current_ma = read_number(self.current_path)
            if current_ma is not None and -ZERO_LOAD_MA <= current_ma < 0:
                current_ma = 0.0
            if voltage_mv is None or current_ma is None or voltage_mv < 0 or current_ma < 0:
                return None  # both negative would multiply to a plausible-looking positive power
            power_mw = voltage_mv * current_ma / 1000.0
        if power_mw is None or not 0 <= power_mw <= MAX_PLAUSIBLE_RAIL_MW:
            return None
        return power_mw

    def unreadable(self) -> Optional[str]:
        """Why a data file of this rail cannot be read at all (missing, or the read fails), else None.

        Only the file system's answer counts: a bad value (empty mid-update, negative) is one bad sample."""
        if self.power_path is not None and self.power_path.exists():
            return _read_failure(self.power_path)
        return _read_failure(self.voltage_path) or _read_failure(self.current_path)

    @property
    def present(self) -> bool:
        """False once the data directory is gone (driver reload: hwmonN/iio:deviceN renumbered)."""
        return self.voltage_path.parent.is_dir()


def _read_failure(path: Path) -> Optional[str]:
    """What goes wrong reading ``path`` (a missing file, the read's errno), or None if it reads."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
        try:
            os.read(fd, 4096)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return "{} does not exist".format(path)
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "errno {}".format(exc.errno))
        return "reading {} fails with {} ({})".format(path, name, os.strerror(exc.errno or 0))
    return None


def _driver_dir(root: Path, chip: Ina3221Chip) -> Path:
    return root / "sys" / "bus" / "i2c" / "drivers" / chip.driver


def _channel_indices(layout: str) -> List[int]:
    return [0, 1, 2] if layout == "iio" else [1, 2, 3]


def _kernel_labels(node: Path, layout: str) -> Dict[int, Optional[str]]:
    """Channel index -> label the kernel reports (None where no label file exists)."""
    name = "rail_name_{}" if layout == "iio" else "in{}_label"
    return {i: read_text(node / name.format(i)) for i in _channel_indices(layout)}


def _data_nodes(device_dir: Path, layout: str) -> List[Path]:
    """Candidate ``iio:deviceN`` / ``hwmon/hwmonN`` directories under one I2C device."""
    if layout == "iio":
        nodes = sorted(device_dir.glob("iio:device*")) + [device_dir / "iio_device"]
        return [n for n in nodes if (n / "in_voltage0_input").exists() or (n / "rail_name_0").exists()]
    nodes = sorted((device_dir / "hwmon").glob("hwmon*"))
    return [n for n in nodes if (n / "in1_input").exists()]


def _match_channels(
    chip: Ina3221Chip, labels: Dict[int, Optional[str]], layout: str
) -> Optional[Dict[str, int]]:
    """Rail label -> kernel channel index, or None if a configured rail is not there.

    A label the kernel reports wins over position; position is used only where the kernel has
    no label file at all (some device trees leave labels out).
    """
    indices = _channel_indices(layout)
    mapping: Dict[str, int] = {}
    for pos, rail in enumerate(chip.channels):
        if rail == NOT_CONNECTED:
            continue
        hits = [i for i, lab in labels.items() if lab == rail]
        if hits:
            mapping[rail] = indices[pos] if indices[pos] in hits else hits[0]
        elif labels.get(indices[pos]) is None:
            mapping[rail] = indices[pos]
        else:
            return None
    return mapping


def _rail_files(node: Path, chip: Ina3221Chip, rail: str, channel: int, layout: str) -> RailFiles:
    if layout == "iio":
        return RailFiles(
            rail=rail,
            chip=chip.device,
            channel=channel,
            voltage_path=node / f"in_voltage{channel}_input",
            current_path=node / f"in_current{channel}_input",
            power_path=node / f"in_power{channel}_input",
        )
    return RailFiles(
        rail=rail,
        chip=chip.device,
        channel=channel,
        voltage_path=node / f"in{channel}_input",
        current_path=node / f"curr{channel}_input",
    )


def locate_chip(root: Path, chip: Ina3221Chip) -> List[RailFiles]:
    """Find one chip's data directory and match its rails by label.

    The configured ``<bus>-00<addr>`` directory is tried first; if it is absent, any device at the
    same I2C address under the same driver whose labels match is used (bus numbers differ between
    JetPack releases of the same module).
    """
    driver_dir = _driver_dir(root, chip)
    exact = driver_dir / chip.device
    candidates = [exact] + [
        d for d in sorted(driver_dir.glob(f"*-{chip.i2c_address}")) if d.name != chip.device
    ]
    seen_labels: List[str] = []
    for device_dir in candidates:
        for node in _data_nodes(device_dir, chip.layout):
            labels = _kernel_labels(node, chip.layout)
            mapping = _match_channels(chip, labels, chip.layout)
            if mapping is not None:
                return [
                    _rail_files(node, chip, rail, ch, chip.layout) for rail, ch in mapping.items()
                ]
            seen_labels.append(f"{node}: {[labels[i] for i in sorted(labels)]}")
    if seen_labels:
        raise MeterError(
            f"INA3221 {chip.device}: the kernel reports rails {'; '.join(seen_labels)}, which do not "
            f"include the configured {chip.channels}; fix channels in the board config's "
            "[[power.ina3221]] table."
        )
    kind = "iio:deviceN" if chip.layout == "iio" else "hwmon/hwmonN"
    raise SensorMissingError(
        f"No INA3221 at {exact}/{kind}: this board has no '{chip.driver}' power monitor at "
        f"{chip.device}. Check the board name (--board), that the {chip.driver} driver is loaded, or "
        "use an external meter (--meter joulescope)."
    )


@dataclass(frozen=True)
class Conversion:
    """One hwmon chip's conversion settings as its driver reports them [Kina]: ``update_interval_ms``, the
    data conversion time (a value stays in the registers that long before the next one replaces it), and
    ``samples``, the averaging count. None where the file is absent or unreadable."""

    chip: str
    update_interval_ms: Optional[float]
    samples: Optional[int]


def conversion_settings(rails: Sequence[RailFiles]) -> List[Conversion]:
    """The conversion settings of each hwmon chip among ``rails`` (JetPack 4's ``ina3221x`` IIO driver
    exposes none)."""
    out: List[Conversion] = []
    for chip in dict.fromkeys(r.chip for r in rails if r.power_path is None):
        node = next(r.voltage_path.parent for r in rails if r.chip == chip)
        interval = read_number(node / "update_interval")
        samples = read_number(node / "samples")
        out.append(Conversion(chip, interval if interval is not None and 0 < interval <= MAX_UPDATE_INTERVAL_MS else None,
                              int(samples) if samples is not None and samples >= 1 else None))
    return out


def _ms(interval_ms: Optional[float]) -> str:
    return "? ms (no update_interval)" if interval_ms is None else "{:g} ms".format(interval_ms)


def _samples(samples: Optional[int]) -> str:
    return "averaging ? samples" if samples is None else "averaging {} sample{}".format(samples, "" if samples == 1 else "s")


class Ina3221Meter(PowerMeter):
    """Reads every configured INA3221 rail; the layout (iio/hwmon) comes from each chip's driver."""

    def __init__(
        self,
        root: Path,
        config: Union[PowerConfig, Mapping[str, Any]],
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(clock)
        config = parse_power_table(config)
        if not config.ina3221:
            raise SensorMissingError(
                f"The board config has no [[power.ina3221]] chips (sensor = {config.sensor!r}); "
                "this board has no INA3221 power monitor; use --meter auto, joulescope or none."
            )
        self.root = Path(root)
        self.config = config
        self.rails: List[RailFiles] = []
        for chip in config.ina3221:
            self.rails.extend(locate_chip(self.root, chip))
        layouts = sorted({c.layout for c in config.ina3221})
        self.name = "ina3221-" + "+".join(layouts)
        self.input_rail = config.input_rail
        names = [r.rail for r in self.rails]
        self.summed_rails = config.summed_rails()  # a fed rail's power is already in its feeder's
        if self.input_rail is not None:
            self.total_basis = f"input rail {self.input_rail} (whole board input)"
        else:
            fed = "".join(f"; {r} left out, fed by {config.fed_by[r]}" for r in names if r in config.fed_by)
            self.total_basis = (
                f"sum of rails {'+'.join(self.summed_rails)} (the board has no input rail{fed}; "
                "the sum misses loads on no measured rail)"
            )
        chips = ", ".join(f"{c.device} ({c.driver})" for c in config.ina3221)
        self.conversions = conversion_settings(self.rails)
        intervals = [c.update_interval_ms for c in self.conversions if c.update_interval_ms]
        self.update_interval_s = max(intervals) / 1e3 if intervals else None
        # Only where every rail's chip says how it converts, one sample at a time: JetPack 4's IIO driver says
        # nothing, and with averaging the chip's filter lags further in a way its documents do not agree on.
        hwmon_only = all(r.power_path is None for r in self.rails)
        plain = self.conversions and all(c.update_interval_ms and c.samples == 1 for c in self.conversions)
        self.conversion_lag_s = self.update_interval_s if (hwmon_only and plain and self.update_interval_s) else 0.0
        self.source = f"INA3221 {chips}: {', '.join(names)}" + "".join(
            "; {} converts every {} ({})".format(c.chip, _ms(c.update_interval_ms), _samples(c.samples))
            for c in self.conversions)
        self.relocations = 0
        self._next_relocate_s = float("-inf")
        self._check_total_rails()

    def _check_total_rails(self) -> None:
        """Trial-read the rails the board total needs, so a dead one fails here, not as a run of nulls.

        Without the input rail (or, on a board summing its rails, any rail) every sample's total is
        unknown: a run would end with every energy null and only a vague warning."""
        needed = [r for r in self.rails
                  if r.rail == self.input_rail or (self.input_rail is None and r.rail in self.summed_rails)]
        for attempt in range(OPEN_TRIES):
            bad = [(r, r.unreadable()) for r in needed]
            bad = [(r, why) for r, why in bad if why]
            if not bad:
                return
            if attempt + 1 < OPEN_TRIES:
                time.sleep(OPEN_RETRY_S)
        rail, problem = bad[0]
        role = "the board total" if self.input_rail is not None else "part of the summed board total"
        if "ENODATA" in str(problem) and rail.power_path is None:
            # mainline ina3221 answers ENODATA for a disabled channel (in[123]_enable = 0)
            enable = rail.voltage_path.parent / "in{}_enable".format(rail.channel)
            fix = "enable the channel (echo 1 | sudo tee {}), ".format(enable)
        else:
            fix = "check that the {} driver is loaded and the channel wired, ".format(
                next(c.driver for c in self.config.ina3221 if c.device == rail.chip))
        raise SensorMissingError(
            "INA3221 rail {} ({} channel {}, {}) cannot be read: {}; {}fix the board config's "
            "[[power.ina3221]] channels (--board), or use --meter joulescope or --meter none.".format(
                rail.rail, rail.chip, rail.channel, role, problem, fix)
        )

    def _relocate(self) -> None:
        """Find the chips again after their data directory vanished (rate-limited, never raises).

        Until they are back every read of those rails fails, so the samples are invalid and the
        windows "energy unknown" rather than numbers from a stale path.
        """
        now = self.clock()
        if now < self._next_relocate_s:
            return
        self._next_relocate_s = now + RELOCATE_INTERVAL_S
        try:
            rails: List[RailFiles] = []
            for chip in self.config.ina3221:
                rails.extend(locate_chip(self.root, chip))
        except (MeterError, OSError):
            return
        if sorted(r.rail for r in rails) == sorted(r.rail for r in self.rails):
            self.rails = rails
            self.relocations += 1

    @property
    def rail_names(self) -> Sequence[str]:
        return [r.rail for r in self.rails]

    def read(self) -> PowerReading:
        t0 = self.clock()
        if not all(r.present for r in self.rails):
            self._relocate()
        rails_mw: Dict[str, float] = {}
        failed: List[str] = []
        for rail in self.rails:
            power_mw = rail.read_power_mw()
            if power_mw is None:
                failed.append(rail.rail)
            else:
                rails_mw[rail.rail] = power_mw
        total_mw: Optional[float]
        if self.input_rail is not None:
            total_mw = rails_mw.get(self.input_rail)
        else:
            # A partial sum would be a wrong number, not a noisy one: drop the sample instead.
            summed = [rails_mw.get(r) for r in self.summed_rails]
            total_mw = None if None in summed else sum(summed)
        return PowerReading(
            t_s=self._stamp(t0),
            rails_mw=rails_mw,
            total_mw=total_mw,
            total_basis=self.total_basis,
            failed_rails=failed,
        )
