"""The ``[power]`` table of a board config, parsed and checked.

Shape (TOML)::

    [power]
    sensor = "ina3221-iio"      # "ina3221-iio" | "ina3221-hwmon" | "pi5-pmic" | "none"
    input_rail = "POM_5V_IN"    # optional: rail measuring the whole board input
    cpu_rail = "POM_5V_CPU"     # optional
    gpu_rail = "POM_5V_GPU"     # optional
    external_meter_hint = "..." # for sensor = "none"
    [[power.ina3221]]           # one per INA3221 chip
    driver = "ina3221x"         # "ina3221x" (IIO) or "ina3221" (hwmon)
    device = "6-0040"           # <i2c bus>-00<addr>
    channels = ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]   # "NC" = not connected
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional

from edgeexit.errors import BoardConfigError

SENSORS = ("ina3221-iio", "ina3221-hwmon", "pi5-pmic", "none")
DRIVERS = ("ina3221x", "ina3221")
NOT_CONNECTED = "NC"
_DEVICE_RE = re.compile(r"^(\d+)-00([0-9a-fA-F]{2})$")


@dataclass(frozen=True)
class Ina3221ChipSpec:
    """One INA3221 chip: its kernel driver, I2C device name and channel labels in order."""

    driver: str
    device: str
    channels: List[str]

    @property
    def layout(self) -> str:
        """``iio`` for NVIDIA's JetPack 4 ``ina3221x`` driver, ``hwmon`` for mainline ``ina3221``."""
        return "iio" if self.driver == "ina3221x" else "hwmon"

    @property
    def i2c_address(self) -> str:
        """Address part of the device name, e.g. ``0040`` for ``6-0040``."""
        return self.device.split("-", 1)[1]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Ina3221ChipSpec":
        driver = d.get("driver")
        if driver not in DRIVERS:
            raise BoardConfigError(
                f"[[power.ina3221]] driver {driver!r} is not one of {', '.join(DRIVERS)}; "
                "use 'ina3221x' for JetPack 4 (IIO) or 'ina3221' for JetPack 5+ (hwmon)."
            )
        device = str(d.get("device", ""))
        if not _DEVICE_RE.match(device):
            raise BoardConfigError(
                f"[[power.ina3221]] device {device!r} is not '<i2c bus>-00<addr>' (e.g. '6-0040'); "
                "copy the directory name from /sys/bus/i2c/drivers/<driver>/."
            )
        channels = d.get("channels")
        if not isinstance(channels, list) or not 1 <= len(channels) <= 3 or not all(
            isinstance(c, str) and c for c in channels
        ):
            raise BoardConfigError(
                f"[[power.ina3221]] {device}: channels must list 1 to 3 rail labels in channel order "
                f"(use 'NC' for an unconnected channel), got {channels!r}."
            )
        return cls(driver=driver, device=device, channels=list(channels))


@dataclass(frozen=True)
class PowerConfig:
    """The parsed ``[power]`` table."""

    sensor: str
    input_rail: Optional[str] = None
    cpu_rail: Optional[str] = None
    gpu_rail: Optional[str] = None
    external_meter_hint: str = ""
    ina3221: List[Ina3221ChipSpec] = field(default_factory=list)

    @property
    def rails(self) -> List[str]:
        """Every connected rail label over all chips, in config order."""
        return [c for chip in self.ina3221 for c in chip.channels if c != NOT_CONNECTED]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PowerConfig":
        if not isinstance(d, Mapping):
            raise BoardConfigError(f"[power] must be a table, got {type(d).__name__}.")
        sensor = d.get("sensor")
        if sensor not in SENSORS:
            raise BoardConfigError(
                f"[power] sensor {sensor!r} is not one of {', '.join(SENSORS)}; fix the board config."
            )
        chips = [Ina3221ChipSpec.from_dict(c) for c in d.get("ina3221", [])]
        cfg = cls(
            sensor=sensor,
            input_rail=d.get("input_rail"),
            cpu_rail=d.get("cpu_rail"),
            gpu_rail=d.get("gpu_rail"),
            external_meter_hint=str(d.get("external_meter_hint", "")),
            ina3221=chips,
        )
        if sensor.startswith("ina3221"):
            want = "ina3221x" if sensor == "ina3221-iio" else "ina3221"
            if not chips:
                raise BoardConfigError(
                    f"[power] sensor = {sensor!r} needs at least one [[power.ina3221]] table."
                )
            for chip in chips:
                if chip.driver != want:
                    raise BoardConfigError(
                        f"[power] sensor = {sensor!r} but chip {chip.device} has driver "
                        f"{chip.driver!r}; use driver = {want!r}."
                    )
            for key in ("input_rail", "cpu_rail", "gpu_rail"):
                rail = getattr(cfg, key)
                if rail is not None and rail not in cfg.rails:
                    raise BoardConfigError(
                        f"[power] {key} = {rail!r} is not a channel of any [[power.ina3221]] "
                        f"(channels: {', '.join(cfg.rails)})."
                    )
        return cfg
