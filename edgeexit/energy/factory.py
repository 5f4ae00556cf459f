"""Choose the power meter for a board, explicitly.

``kind="auto"`` follows the board config's ``[power] sensor`` field and nothing else: it never
probes for or falls back to a simulator, and a board without a sensor raises
:class:`SensorMissingError` pointing at an external meter. A simulated board is read through the
same backends (its sysfs tree under ``root``, its own PMIC ``runner``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from edgeexit.energy.ina3221 import Ina3221Meter
from edgeexit.energy.meter import Clock, PowerMeter
from edgeexit.energy.pi5_pmic import Pi5PmicMeter, Runner
from edgeexit.energy.reading import PowerReading
from edgeexit.boards.config import PowerConfig, parse_power_table
from edgeexit.errors import BoardConfigError, SensorMissingError

KINDS = ("auto", "ina3221", "pmic", "joulescope", "none")
DEFAULT_EXTERNAL_HINT = (
    "wire a Joulescope JS220/JS110 in series with the board's supply and use --meter joulescope"
)


class NoMeter(PowerMeter):
    """Chosen explicitly with ``kind="none"``: measures nothing, so every window is invalid."""

    name = "none"
    source = "no power meter (energy not measured)"
    total_basis = "not measured"

    def read(self) -> PowerReading:
        return PowerReading(self.clock(), {}, None, self.total_basis)


def _no_sensor(config: PowerConfig) -> SensorMissingError:
    hint = config.external_meter_hint or DEFAULT_EXTERNAL_HINT
    return SensorMissingError(f"This board has no on-board power sensor; to measure energy, {hint}.")


def _wrong_sensor(config: PowerConfig, wanted: str) -> SensorMissingError:
    """``--meter`` named a sensor this board lacks: the one line names the values that do work here."""
    if config.sensor == "none":
        external = config.external_meter_hint or "wire a Joulescope JS220/JS110 in series with the board's supply"
        fix = f"--meter joulescope ({external}) or --meter none"
    else:  # the board's own sensor is what auto reads
        fix = "--meter auto, --meter joulescope or --meter none"
    return SensorMissingError(f"The board's power sensor is {config.sensor!r}, not {wanted}; use {fix}.")


def meter_for_board(
    power_table: Union[PowerConfig, Mapping[str, Any]],
    root: Path = Path("/"),
    kind: str = "auto",
    runner: Optional[Runner] = None,
    clock: Clock = time.monotonic,
    joulescope_driver: Any = None,
    history_s: Optional[float] = None,
) -> PowerMeter:
    """The meter for a board's ``[power]`` table (the board config's parsed one, or a raw table).

    ``kind``: ``auto`` (what the board's ``sensor`` says; a board whose sensor is ``none`` raises
    :class:`SensorMissingError` naming an external meter), ``ina3221``, ``pmic``, ``joulescope``
    or ``none`` (an explicit :class:`NoMeter`: every reading is invalid, energy is reported as
    unmeasured).
    ``root`` is the filesystem root holding ``sys/`` (``/`` on a board, a tree on a simulated one);
    ``runner`` replaces ``vcgencmd`` for the Pi 5 PMIC. ``history_s``: how much of its stream a
    streaming meter (the Joulescope) keeps, at least the longest window or period to be measured
    (None: its default, 120 s); polled meters keep nothing (the Sampler holds their readings).
    """
    if kind not in KINDS:
        raise BoardConfigError(f"Unknown meter kind {kind!r}; use one of {', '.join(KINDS)}.")
    config = parse_power_table(power_table)
    requested = kind
    if kind == "auto":
        kind = {
            "ina3221-iio": "ina3221",
            "ina3221-hwmon": "ina3221",
            "pi5-pmic": "pmic",
            "none": "none",
        }[config.sensor]
    if kind == "ina3221":
        if not config.ina3221:
            raise _wrong_sensor(config, "an INA3221 power monitor")
        return Ina3221Meter(Path(root), config, clock=clock)
    if kind == "pmic":
        if config.sensor != "pi5-pmic":
            raise _wrong_sensor(config, "the Raspberry Pi 5 PMIC")
        # the configured rails, so a rail missing from one answer can never shrink the total
        return Pi5PmicMeter(runner=runner, clock=clock, rails=config.pmic_rails or None, board_is_pi5=True)
    if kind == "joulescope":
        from edgeexit.energy.joulescope import JoulescopeMeter

        if history_s is None:
            return JoulescopeMeter(driver=joulescope_driver, clock=clock)
        return JoulescopeMeter(driver=joulescope_driver, clock=clock, history_s=history_s)
    if requested == "none":
        return NoMeter(clock=clock)
    raise _no_sensor(config)
