"""Board configs: each board's sysfs layout as data (``board_configs/<name>.toml``).

A new board is a new TOML file, not new code. Every path is relative to the sysfs root (a
directory under which ``sys/`` and ``proc/`` live) so the same config serves a real board (root
``/``) and a simulated tree.
"""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

from edgeexit.boards.tomlload import load_toml, refuse_non_file
from edgeexit.boards.validate import Table
from edgeexit.errors import BoardConfigError
from edgeexit.paths import board_configs_dir

#: the kernel's thermal trip types (thermal_trip_type)
TRIP_TYPES = ("active", "passive", "hot", "critical")
#: what a thermal zone measures, as the configs say it (documentation; a misspelling is refused)
ZONE_ROLES = ("cpu", "gpu", "soc", "board", "pmic")
# The kernel family decides the sysfs write rules (see edgeexit/sim/rules.py).
KERNEL_FAMILIES = ("4.9", "5.10", "5.15", "6.x")
POWER_SENSORS = ("ina3221-iio", "ina3221-hwmon", "pi5-pmic", "none")
INA3221_DRIVERS = {"ina3221-iio": "ina3221x", "ina3221-hwmon": "ina3221"}
CPUFREQ_DIR = "sys/devices/system/cpu/cpufreq"
DEVICE_TREE_MODEL = "sys/firmware/devicetree/base/model"  # the board detection reads it (and proc/device-tree/model)
MAX_TRIP_MC = 150000  # 150 °C, the top of --thermal-limit-mc


@dataclass(frozen=True)
class CpuPolicy:
    """One cpufreq policy: ``sys/devices/system/cpu/cpufreq/policy<first cpu>``."""

    name: str
    cpus: List[int]
    core_type: str

    @property
    def relpath(self) -> str:
        return "{}/{}".format(CPUFREQ_DIR, self.name)


@dataclass(frozen=True)
class GpuConfig:
    """The GPU's devfreq device; ``devfreq_paths[0]`` is this board's JetPack path, the rest are
    the alternatives seen on other JetPack versions (discovery also matches ``of_node_names``)."""

    devfreq_paths: List[str]
    of_node_names: List[str]

    @property
    def devfreq_name(self) -> str:
        return self.devfreq_paths[0].rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class EmcConfig:
    """External memory controller clock (read-only for edgeexit; EMC lives in debugfs)."""

    rate_path: str
    cap_path: Optional[str]


NOT_CONNECTED = "NC"  # the channel label of an unconnected INA3221 input


@dataclass(frozen=True)
class Ina3221Chip:
    """One INA3221 chip; ``channels`` are rail labels in channel order ("NC" = not connected)."""

    driver: str
    device: str
    channels: List[str]
    index: int

    @property
    def layout(self) -> str:
        """``iio`` for NVIDIA's JetPack 4 ``ina3221x`` driver, ``hwmon`` for mainline ``ina3221``."""
        return "iio" if self.driver == "ina3221x" else "hwmon"

    @property
    def i2c_address(self) -> str:
        """Address part of the device name, e.g. ``0040`` for ``6-0040``."""
        return self.device.split("-", 1)[1]

    @property
    def relpath(self) -> str:
        """The chip's sensor directory (IIO ``iio:deviceN`` or hwmon ``hwmon/hwmonN``)."""
        base = "sys/bus/i2c/drivers/{}/{}".format(self.driver, self.device)
        if self.driver == "ina3221x":
            return "{}/iio:device{}".format(base, self.index)
        return "{}/hwmon/hwmon{}".format(base, self.index)


@dataclass(frozen=True)
class PowerConfig:
    """The board's power sensors (``[power]``); the meters are written against this shape."""

    sensor: str
    input_rail: Optional[str] = None
    cpu_rail: Optional[str] = None
    gpu_rail: Optional[str] = None
    external_meter_hint: Optional[str] = None
    ina3221: List[Ina3221Chip] = field(default_factory=list)
    # Pi 5 only: rail names `vcgencmd pmic_read_adc` prints (no sysfs files).
    pmic_rails: List[str] = field(default_factory=list)
    # rail -> the measured rail that supplies it (``[power.fed_by]``): its power is already in the
    # feeder's, so a board total summed over rails leaves it out (AGX Orin: VIN_SYS_5V0 feeds VDDQ_VDD2_1V8AO).
    fed_by: Dict[str, str] = field(default_factory=dict)

    def rails(self) -> List[str]:
        """Every connected rail label, in chip and channel order."""
        out = [c for chip in self.ina3221 for c in chip.channels if c != NOT_CONNECTED]
        return out or list(self.pmic_rails)

    def summed_rails(self) -> List[str]:
        """The rails a board total without an input rail adds up: every rail no other measured rail feeds."""
        return [r for r in self.rails() if r not in self.fed_by]


@dataclass(frozen=True)
class ThermalZone:
    """``sys/class/thermal/thermal_zone<index>``; ``read_errno`` marks zones whose ``temp`` read
    fails on the real board (Orin cv*-thermal gives EAGAIN while DLA/PVA are off)."""

    index: int
    type: str
    role: Optional[str]
    trips_mc: List[int]
    trip_types: List[str]
    read_errno: Optional[str]

    @property
    def relpath(self) -> str:
        return "sys/class/thermal/thermal_zone{}".format(self.index)


@dataclass(frozen=True)
class BoardConfig:
    """One board, as described by ``board_configs/<name>.toml``."""

    name: str
    description: str
    vendor: str
    soc: str
    jetpack: Optional[str]
    kernel: str
    kernel_version: str
    model_patterns: List[str]
    device_tree_model: str
    firmware_profile: str
    cpu_policies: List[CpuPolicy]
    possible_cpus: int
    gpu: Optional[GpuConfig]
    emc: Optional[EmcConfig]
    power: PowerConfig
    thermal_zones: List[ThermalZone]
    source: Path

    def matches_model(self, model: str) -> bool:
        return any(re.search(p, model, re.IGNORECASE) for p in self.model_patterns)

    def summary(self) -> Dict[str, Any]:
        """A JSON-friendly summary for `edgeexit boards --json`."""
        return {
            "name": self.name,
            "description": self.description,
            "soc": self.soc,
            "jetpack": self.jetpack,
            "kernel": self.kernel_version,
            "kernel_family": self.kernel,
            "cpu_policies": {p.name: p.cpus for p in self.cpu_policies},
            "gpu_devfreq": self.gpu.devfreq_paths[0] if self.gpu else None,
            "power_sensor": self.power.sensor,
            "power_rails": self.power.rails(),
            "thermal_zones": [z.type for z in self.thermal_zones],
            "config": str(self.source),
        }


def parse_power_table(data: Union[PowerConfig, Mapping[str, Any]], source: str = "[power] table") -> PowerConfig:
    """Validate a ``[power]`` table on its own (a meter built without a whole board config); a board
    config's already parsed one is returned as it is."""
    if isinstance(data, PowerConfig):
        return data
    if not isinstance(data, Mapping):
        raise BoardConfigError("{}: [power] must be a table, not {}".format(source, type(data).__name__))
    return _parse_power(Table(dict(data), Path(source), "power"), require_hint=False)


def _parse_power(t: Table, require_hint: bool = True) -> PowerConfig:
    t.unknown_keys(["sensor", "input_rail", "cpu_rail", "gpu_rail", "external_meter_hint", "ina3221", "pmic_rails",
                    "fed_by"])
    sensor = t.str("sensor")
    if sensor not in POWER_SENSORS:
        raise t.fail("sensor", "must be one of {}, not {!r}".format(", ".join(POWER_SENSORS), sensor))
    chips = []  # type: List[Ina3221Chip]
    for pos, ct in enumerate(t.tables("ina3221", [])):
        ct.unknown_keys(["driver", "device", "channels", "index"])
        driver = ct.str("driver")
        if sensor in INA3221_DRIVERS and driver != INA3221_DRIVERS[sensor]:
            raise ct.fail("driver", "must be {!r} for sensor {!r}".format(INA3221_DRIVERS[sensor], sensor))
        device = ct.str("device")
        if not re.match(r"^\d+-00[0-9a-f]{2}$", device):
            raise ct.fail("device", "must look like '<i2c bus>-00<addr>' (e.g. '6-0040'), not {!r}".format(device))
        channels = ct.str_list("channels")
        if len(channels) != 3:
            raise ct.fail("channels", "must list the 3 channel labels of the chip")
        default_index = pos if driver == "ina3221x" else pos + 1
        chip = Ina3221Chip(driver, device, channels, ct.int("index", default_index, minimum=0))
        # Two chips at one address would be one sensor twice; a label on two channels, one rail summed twice.
        if any(c.device == device for c in chips):
            raise ct.fail("device", "{!r} is another [[power.ina3221]] chip's too; each chip has its own I2C "
                                    "address".format(device))
        if any(c.index == chip.index for c in chips):  # the kernel numbers hwmonN / iio:deviceN once per board
            raise ct.fail("index", "{} is another [[power.ina3221]] chip's too; give each chip its own".format(chip.index))
        seen = [label for c in chips for label in c.channels]
        for label in channels:
            if label != NOT_CONNECTED and (label in seen or channels.count(label) > 1):
                raise ct.fail("channels", "names rail {!r} twice; each rail is on one channel ('{}' for a channel "
                                          "with nothing on it)".format(label, NOT_CONNECTED))
        chips.append(chip)
    if sensor.startswith("ina3221") and not chips:
        raise t.fail("ina3221", "needs at least one [[power.ina3221]] chip for sensor {!r}".format(sensor))
    power = PowerConfig(
        sensor=sensor,
        input_rail=t.str("input_rail", None),
        cpu_rail=t.str("cpu_rail", None),
        gpu_rail=t.str("gpu_rail", None),
        external_meter_hint=t.str("external_meter_hint", None),
        ina3221=chips,
        pmic_rails=t.str_list("pmic_rails", []),
        fed_by=_parse_fed_by(t),
    )
    if require_hint and sensor == "none" and not power.external_meter_hint:
        raise t.fail("external_meter_hint", "is required when sensor = 'none' (say what meter to attach)")
    known = power.rails()
    for key in ("input_rail", "cpu_rail", "gpu_rail"):
        rail = getattr(power, key)
        if rail is not None and rail not in known:
            raise t.fail(key, "names rail {!r}, which no sensor channel carries ({})".format(rail, ", ".join(known)))
    _check_fed_by(t, power, known)
    return power


def _parse_fed_by(t: Table) -> Dict[str, str]:
    if not t.has("fed_by"):
        return {}
    ft = t.table("fed_by")
    return {rail: ft.str(rail) for rail in ft.data}


def _check_fed_by(t: Table, power: PowerConfig, known: List[str]) -> None:
    """Feeds are between INA3221 rails, the feeder is a rail nothing feeds (one level, as on the AGX Orin), and
    neither the input rail nor the CPU/GPU rail is fed: those carry their own power, which the simulated
    board shows on them."""
    if not power.fed_by:
        return
    if not power.sensor.startswith("ina3221"):
        raise t.fail("fed_by", "applies to INA3221 rails only (sensor {!r} totals its own way); remove it".format(
            power.sensor))
    ft = t.table("fed_by")
    for rail, feeder in power.fed_by.items():
        for name in (rail, feeder):
            if name not in known:
                raise ft.fail(rail, "names rail {!r}, which no sensor channel carries ({})".format(name, ", ".join(known)))
        for key in ("input_rail", "cpu_rail", "gpu_rail"):
            if rail == getattr(power, key):
                raise ft.fail(rail, "is the board's {}, which carries its own power; a fed rail is one whose power is "
                                    "already in its feeder's".format(key))
        if feeder in power.fed_by:
            raise ft.fail(rail, "is fed by {!r}, itself fed by {!r}; name the rail nothing feeds as the feeder".format(
                feeder, power.fed_by[feeder]))


def parse_board(data: Dict[str, Any], source: Path) -> BoardConfig:
    """Validate one board config (already parsed TOML)."""
    t = Table(data, source)
    t.unknown_keys(["name", "description", "vendor", "soc", "jetpack", "kernel", "kernel_version",
                    "model_patterns", "device_tree_model", "firmware_profile", "cpu", "gpu", "emc",
                    "power", "thermal"])
    name = t.str("name")
    if name != source.stem:
        raise t.fail("name", "is {!r} but the file is {}; they must agree".format(name, source.name))
    kernel = t.str("kernel")
    if kernel not in KERNEL_FAMILIES:
        raise t.fail("kernel", "must be one of {}, not {!r}".format(", ".join(KERNEL_FAMILIES), kernel))
    patterns = t.str_list("model_patterns")
    for p in patterns:
        try:
            re.compile(p)
        except re.error as err:
            raise t.fail("model_patterns", "has an invalid regular expression {!r}: {}".format(p, err)) from None

    cpu = t.table("cpu")
    cpu.unknown_keys(["possible_cpus", "policies"])
    policies = []  # type: List[CpuPolicy]
    for pt in cpu.tables("policies"):
        pt.unknown_keys(["cpus", "core_type"])
        cpus = pt.int_list("cpus", ascending=True)
        policies.append(CpuPolicy("policy{}".format(cpus[0]), cpus, pt.str("core_type")))
    if not policies:
        raise cpu.fail("policies", "needs at least one [[cpu.policies]] entry")
    possible = cpu.int("possible_cpus", minimum=1)
    seen = [c for p in policies for c in p.cpus]
    if sorted(seen) != list(range(possible)):
        raise cpu.fail("policies", "must cover cpus 0..{} exactly once (got {})".format(possible - 1, seen))

    gpu = None  # type: Optional[GpuConfig]
    if t.has("gpu"):
        gt = t.table("gpu")
        gt.unknown_keys(["devfreq_paths", "of_node_names"])
        paths = gt.relpath_list("devfreq_paths")
        if not paths:
            raise gt.fail("devfreq_paths", "must list at least one path")
        gpu = GpuConfig(paths, gt.str_list("of_node_names", []))

    emc = None  # type: Optional[EmcConfig]
    if t.has("emc"):
        et = t.table("emc")
        et.unknown_keys(["rate_path", "cap_path"])
        emc = EmcConfig(et.relpath("rate_path"), et.relpath("cap_path", None))

    zones = []  # type: List[ThermalZone]
    th = t.table("thermal")
    th.unknown_keys(["zones"])
    for i, zt in enumerate(th.tables("zones")):
        zt.unknown_keys(["type", "role", "trips_mc", "trip_types", "read_errno"])
        # above 0 °C and at most 150 °C (the --thermal-limit-mc range): a negative trip read as a "-0.0 °C limit"
        trips = zt.int_list("trips_mc", [], minimum=1, maximum=MAX_TRIP_MC)
        types = zt.str_list("trip_types", ["passive"] * len(trips))
        if len(types) != len(trips):
            raise zt.fail("trip_types", "must have one entry per trips_mc value")
        unknown = [k for k in types if k not in TRIP_TYPES]
        if unknown:
            raise zt.fail("trip_types", "holds {!r}; a kernel trip type is one of {}".format(unknown[0], ", ".join(TRIP_TYPES)))
        critical = [m for m, k in zip(trips, types) if k == "critical"]
        if critical and any(m > min(critical) for m, k in zip(trips, types) if k != "critical"):
            raise zt.fail("trips_mc", "has a throttling trip above the critical one ({} mC); list the temperatures in "
                          "trip_types' order".format(min(critical)))
        role = zt.str("role", None)
        if role is not None and role not in ZONE_ROLES:
            raise zt.fail("role", "is {!r}; use one of {}".format(role, ", ".join(ZONE_ROLES)))
        errno_name = zt.str("read_errno", None)
        if errno_name is not None and errno_name not in ("EAGAIN", "EIO", "ENODATA"):
            raise zt.fail("read_errno", "must be EAGAIN, EIO or ENODATA")
        zones.append(ThermalZone(i, zt.str("type"), role, trips, types, errno_name))

    power = _parse_power(t.table("power"))
    _check_nesting(t, policies, gpu, emc, zones, power)
    return BoardConfig(
        name=name,
        description=t.str("description"),
        vendor=t.str("vendor"),
        soc=t.str("soc"),
        jetpack=t.str("jetpack", None),
        kernel=kernel,
        kernel_version=t.str("kernel_version"),
        model_patterns=patterns,
        device_tree_model=t.str("device_tree_model"),
        firmware_profile=t.str("firmware_profile", name),
        cpu_policies=policies,
        possible_cpus=possible,
        gpu=gpu,
        emc=emc,
        power=power,
        thermal_zones=zones,
        source=source,
    )


def _check_nesting(t: Table, policies: List[CpuPolicy], gpu: Optional[GpuConfig], emc: Optional[EmcConfig],
                   zones: List[ThermalZone], power: PowerConfig) -> None:
    """A sysfs node (a file: the EMC's rate and cap) cannot also be a directory holding other nodes. Before this
    check ``rate_path = "sys/kernel"`` beside ``cap_path = "sys/kernel/..."`` failed when the tree was built, as
    "Not a directory" with no fix."""
    files = []  # type: List[tuple]  # (key in the config, normalized path)
    if emc is not None:
        files.append(("emc.rate_path", emc.rate_path))
        if emc.cap_path:
            files.append(("emc.cap_path", emc.cap_path))
    files.append(("(the device-tree model)", DEVICE_TREE_MODEL))
    dirs = [("(cpufreq {})".format(p.name), p.relpath) for p in policies]
    dirs += [("gpu.devfreq_paths", d) for d in (gpu.devfreq_paths if gpu else [])]
    dirs += [("(thermal zone {})".format(z.index), z.relpath) for z in zones]
    dirs += [("power.ina3221[{}]".format(i), c.relpath) for i, c in enumerate(power.ina3221)]
    nodes = [(k, posixpath.normpath(p), True) for k, p in files] + [(k, posixpath.normpath(p), False) for k, p in dirs]
    for key, node, is_file in nodes:
        if not is_file:
            continue
        for other_key, other, other_is_file in nodes:
            # a file with another node below it, or a file where a directory must be (rate_path == cap_path is fine)
            if not (other.startswith(node + "/") or (other == node and not other_is_file)):
                continue
            where = "inside it" if other != node else "at the same path"
            if not key.startswith("("):  # keys in parentheses are fixed paths: blame the configurable one
                raise t.fail(key, "is {!r}, a file (a sysfs node), yet {} {!r} lies {}; a file cannot hold other "
                                  "nodes: correct one of the two paths".format(node, other_key, other, where))
            raise t.fail(other_key, "is {!r}, which lies {} {} {!r}, a file (a sysfs node); correct the path".format(
                other, "inside" if other != node else "at", key, node))


BOARD_CONFIGS_ENV = "EDGEEXIT_BOARD_CONFIGS"


def _config_files(d: Path) -> List[Path]:
    """The board configs in ``d``: regular ``*.toml`` files (or links to one), skipping hidden names (an editor's
    lock link ``.#jetson-nano.toml``, a backup) and directories, which read as boards no one can load."""
    return [p for p in d.glob("*.toml") if not p.name.startswith(".") and p.is_file()]


def _configs_dir(directory: Optional[Path]) -> Path:
    """``directory``, else the board configs directory; one that ``EDGEEXIT_BOARD_CONFIGS`` names must exist and
    hold at least one ``*.toml``: a typo there would otherwise read as "no boards" and the fix would stay hidden."""
    if directory is not None:
        return directory
    d = board_configs_dir()
    if os.environ.get(BOARD_CONFIGS_ENV):
        if not d.is_dir():
            raise BoardConfigError("{}={} is not a directory; point it at a directory of board config files "
                                   "(<name>.toml), or unset it to use the shipped ones".format(BOARD_CONFIGS_ENV, d))
        if not _config_files(d):
            raise BoardConfigError("{}={} holds no board config (<name>.toml) files; point it at a directory that "
                                   "does, or unset it to use the shipped ones".format(BOARD_CONFIGS_ENV, d))
    return d


def board_names(directory: Optional[Path] = None) -> List[str]:
    """Names of every shipped board config, sorted."""
    d = _configs_dir(directory)
    return sorted(p.stem for p in _config_files(d))


def load_board(name: str, directory: Optional[Path] = None) -> BoardConfig:
    """Load and validate ``board_configs/<name>.toml``."""
    d = _configs_dir(directory)
    path = d / "{}.toml".format(name)
    hidden = "/" in name or name.startswith(".")  # no board's name: never looked at
    if not hidden:
        refuse_non_file(path, "config", name)
    if hidden or not path.is_file():
        where = " in {}={}".format(BOARD_CONFIGS_ENV, d) if directory is None and os.environ.get(BOARD_CONFIGS_ENV) else ""
        raise BoardConfigError("unknown board {!r}; known boards{}: {} (see `edgeexit boards`)".format(
            name, where, ", ".join(board_names(d)) or "none"))
    return parse_board(load_toml(path), path)


def load_all_boards(directory: Optional[Path] = None) -> List[BoardConfig]:
    return [load_board(n, directory) for n in board_names(directory)]
