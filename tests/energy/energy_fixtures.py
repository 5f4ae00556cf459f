"""Helpers for the power-meter tests: sysfs trees laid out like real boards, a fake clock, and a
fake Joulescope driver that speaks the real driver's message format."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from edgeexit.energy.time64 import as_time64

# ---------------------------------------------------------------------------------------------
# Board [power] tables, in the shape every board config uses.
NANO_POWER: Dict[str, Any] = {
    "sensor": "ina3221-iio",
    "input_rail": "POM_5V_IN",
    "cpu_rail": "POM_5V_CPU",
    "gpu_rail": "POM_5V_GPU",
    "ina3221": [
        {"driver": "ina3221x", "device": "6-0040", "channels": ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]}
    ],
}
ORIN_NANO_POWER: Dict[str, Any] = {
    "sensor": "ina3221-hwmon",
    "input_rail": "VDD_IN",
    "cpu_rail": "VDD_CPU_GPU_CV",
    "ina3221": [
        {"driver": "ina3221", "device": "1-0040", "channels": ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]}
    ],
}
AGX_ORIN_POWER: Dict[str, Any] = {
    "sensor": "ina3221-hwmon",
    "cpu_rail": "VDD_CPU_CV",
    "gpu_rail": "VDD_GPU_SOC",
    "ina3221": [
        {"driver": "ina3221", "device": "1-0040", "channels": ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]},
        {"driver": "ina3221", "device": "1-0041", "channels": ["NC", "VDDQ_VDD2_1V8AO", "NC"]},
    ],
    "fed_by": {"VDDQ_VDD2_1V8AO": "VIN_SYS_5V0"},  # [EM]: summing both double-counts
}
PI5_POWER: Dict[str, Any] = {"sensor": "pi5-pmic"}
PI4_POWER: Dict[str, Any] = {
    "sensor": "none",
    "external_meter_hint": "wire a Joulescope JS220 between the USB-C supply and the Pi 4 "
    "(--meter joulescope)",
}

DATA_DIR = Path(__file__).parent / "data"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ---------------------------------------------------------------------------------------------
# JetPack 4 (L4T 32, NVIDIA ina3221x IIO staging driver)
def make_iio_chip(
    root: Path, device: str, rails: List[str], mv_ma: List[tuple], iio_index: int = 0
) -> Path:
    """One ``ina3221x`` chip: ``<root>/sys/bus/i2c/drivers/ina3221x/<device>/iio:deviceN/``.

    Files and formats as the L4T 4.9 driver prints them: integer mV/mA/mW, power = mV*mA/1000
    truncated, rail names without unit, limits as "%d ma".
    """
    node = root / "sys/bus/i2c/drivers/ina3221x" / device / f"iio:device{iio_index}"
    write(node / "name", "ina3221x\n")
    write(node / "running_mode", "1\n")
    for n, (rail, (mv, ma)) in enumerate(zip(rails, mv_ma)):
        write(node / f"rail_name_{n}", f"{rail}\n")
        write(node / f"in_voltage{n}_input", f"{mv}\n")
        write(node / f"in_current{n}_input", f"{ma}\n")
        write(node / f"in_power{n}_input", f"{mv * ma // 1000}\n")
        write(node / f"in_current{n}_trigger_input", f"{ma}\n")
        write(node / f"in_power{n}_trigger_input", f"{mv * ma // 1000}\n")
        write(node / f"crit_current_limit_{n}", "3000 ma\n")
        write(node / f"warn_current_limit_{n}", "2000 ma\n")
        write(node / f"ui_input_{n}", f"{mv} {ma}\n")
    return node


def set_iio_power(node: Path, channel: int, power_mw: int) -> None:
    write(node / f"in_power{channel}_input", f"{power_mw}\n")


# ---------------------------------------------------------------------------------------------
# JetPack 5/6 (L4T 35/36, mainline ina3221 hwmon driver)
def make_hwmon_chip(
    root: Path, device: str, labels: List[str], mv_ma: List[tuple], hwmon_index: int = 1
) -> Path:
    """One ``ina3221`` chip: ``<root>/sys/bus/i2c/drivers/ina3221/<device>/hwmon/hwmonN/``.

    1-based channels; ``in{1..3}_label``/``in{1..3}_input`` (mV), ``curr{1..3}_input`` (mA),
    shunt voltages ``in{4..6}_input`` (uV), ``in7_label`` "sum of shunt voltages"; no power file.
    """
    node = root / "sys/bus/i2c/drivers/ina3221" / device / "hwmon" / f"hwmon{hwmon_index}"
    write(node / "name", "ina3221\n")
    write(node / "update_interval", "7\n")  # the mainline default: 3 x (1.1 + 1.1) ms
    write(node / "samples", "1\n")
    for n, (label, (mv, ma)) in enumerate(zip(labels, mv_ma), start=1):
        write(node / f"in{n}_label", f"{label}\n")
        write(node / f"in{n}_input", f"{mv}\n")
        write(node / f"curr{n}_input", f"{ma}\n")
        write(node / f"curr{n}_crit", "32760\n")
        write(node / f"curr{n}_max", "32760\n")
        write(node / f"curr{n}_crit_alarm", "0\n")
        write(node / f"curr{n}_max_alarm", "0\n")
        write(node / f"in{n + 3}_input", f"{ma * 5}\n")  # shunt uV across a 5 mOhm resistor
    write(node / "in7_label", "sum of shunt voltages\n")
    write(node / "in7_input", "0\n")
    write(node / "curr4_crit_alarm", "0\n")
    return node


def make_nano(root: Path) -> Path:
    """Jetson Nano (JP4): 6-0040/iio:device0, POM_5V_IN / POM_5V_GPU / POM_5V_CPU."""
    return make_iio_chip(
        root, "6-0040", ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"], [(5016, 800), (4976, 120), (4984, 360)]
    )


def make_orin_nano(root: Path, hwmon_index: int = 1, device: str = "1-0040") -> Path:
    """Orin Nano (JP5/6): 1-0040/hwmon/hwmon1, VDD_IN / VDD_CPU_GPU_CV / VDD_SOC."""
    return make_hwmon_chip(
        root,
        device,
        ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"],
        [(5080, 1200), (5072, 400), (5064, 300)],
        hwmon_index,
    )


def make_agx_orin(root: Path) -> List[Path]:
    """AGX Orin (JP5/6): no input rail; 0x41 has two NC channels."""
    return [
        make_hwmon_chip(
            root, "1-0040", ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"],
            [(4968, 1000), (4976, 500), (4960, 800)], 3,
        ),
        make_hwmon_chip(root, "1-0041", ["NC", "VDDQ_VDD2_1V8AO", "NC"], [(0, 0), (4952, 200), (0, 0)], 4),
    ]


class FakeClock:
    """A host monotonic clock the test moves by hand."""

    def __init__(self, t_s: float = 100.0) -> None:
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


# ---------------------------------------------------------------------------------------------
# Joulescope
class FakeJoulescopeDriver:
    """Behaves like ``pyjoulescope_driver.Driver`` for one JS220 streaming power.

    ``power_w(t_host_s)`` is the true power at host monotonic time. The instrument's sample counter
    runs at ``counter_rate`` (deliberately not exactly 2 MHz: a real crystal is off by ppm, and the
    driver's time map carries the measured rate). ``stream(until_host_s)`` delivers ``s/p/!data``
    messages in the binding's format while ``s/p/ctrl`` is 1. ``deliver(host_now_s)`` is what the
    USB thread has handed over by host time ``host_now_s``: whole chunks, each ``usb_latency_s``
    after its last sample (a real JS220 sends its stream in chunks that reach the host ms late).
    """

    def __init__(
        self,
        power_w: Callable[[float], float],
        host_offset_s: float,
        counter0_host_s: float,
        devices: Optional[List[str]] = None,
        counter_rate: float = 2_000_000.0 * (1 + 50e-6),
        chunk_samples: int = 1000,
        usb_latency_s: float = 0.0,
    ) -> None:
        self.power_w = power_w
        self.host_offset_s = host_offset_s  # wall (POSIX) minus host monotonic
        self.counter0_host_s = counter0_host_s
        self.devices = ["u/js220/000415"] if devices is None else devices
        self.counter_rate = counter_rate
        self.chunk_samples = chunk_samples
        self.usb_latency_s = usb_latency_s
        self.opened: Dict[str, str] = {}
        self.state: Dict[str, Any] = {}
        self.published: List[tuple] = []
        self.subs: Dict[str, List[Callable[[str, Any], None]]] = {}
        self.counter = 1_000_000  # the counter is not 0 when streaming starts
        self.finalized = False

    # driver API
    def device_paths(self, timeout: Optional[float] = None) -> List[str]:
        return list(self.devices)

    def open(self, device_prefix: str, mode: Optional[str] = None, timeout: Optional[float] = None) -> None:
        if device_prefix not in self.devices:
            raise TimeoutError(f"open {device_prefix} timed out")
        self.opened[device_prefix] = mode or "defaults"

    def close(self, device_prefix: str, timeout: Optional[float] = None) -> None:
        self.opened.pop(device_prefix, None)

    def _device(self, topic: str) -> str:
        dev = "/".join(topic.split("/")[:3])
        if dev not in self.opened:
            raise RuntimeError(f"publish to {topic}: device {dev} is not open")
        return dev

    def publish(self, topic: str, value: Any, timeout: Optional[float] = None) -> None:
        self._device(topic)
        self.published.append((topic, value))
        self.state[topic] = value

    def query(self, topic: str, timeout: Optional[float] = None) -> Any:
        self._device(topic)
        return self.state[topic]

    def subscribe(self, topic: str, flags: Any, fn: Callable[[str, Any], None], timeout: Optional[float] = None) -> None:
        self.subs.setdefault(topic, []).append(fn)

    def unsubscribe(self, topic: str, fn: Callable[[str, Any], None], timeout: Optional[float] = None) -> None:
        self.subs[topic].remove(fn)

    def finalize(self, timeout: Optional[float] = None) -> None:
        self.finalized = True

    # instrument model
    def _counter_host_s(self, counter: float) -> float:
        return self.counter0_host_s + (counter - 1_000_000) / self.counter_rate

    def stream(self, until_host_s: float) -> int:
        """Send power messages up to ``until_host_s``; returns how many were sent."""
        dev = self.devices[0]
        if self.state.get(f"{dev}/s/p/ctrl") != 1:
            return 0
        fs = int(self.state.get(f"{dev}/h/fs", 1_000_000))
        decimate = 2_000_000 // fs
        sent = 0
        # The time map: UTC of a counter value, as the driver estimates it from the host clock.
        offset_counter = 1_000_000
        offset_time = as_time64(self.counter0_host_s + self.host_offset_s)
        while self._counter_host_s(self.counter + self.chunk_samples * decimate) <= until_host_s:
            k = np.arange(self.chunk_samples)
            # Power of each sample = mean over its period; midpoint rule is enough for the tests'
            # piecewise-constant / linear waveforms.
            mid = self._counter_host_s(self.counter + (k + 0.5) * decimate)
            data = np.array([self.power_w(t) for t in mid], dtype=np.float32)
            msg = {
                "sample_id": self.counter,
                "utc": offset_time + int((self.counter - offset_counter) / self.counter_rate * (1 << 30)),
                "field_id": 3,
                "index": 0,
                "sample_rate": 2_000_000,
                "decimate_factor": decimate,
                "time_map": {
                    "offset_time": offset_time,
                    "offset_counter": offset_counter,
                    "counter_rate": self.counter_rate,
                },
                "data": data,
            }
            for fn in list(self.subs.get(f"{dev}/s/p/!data", [])):
                fn(f"{dev}/s/p/!data", msg)
            self.counter += self.chunk_samples * decimate
            sent += 1
        return sent

    def deliver(self, host_now_s: float) -> int:
        """The messages the USB thread has delivered by host time ``host_now_s`` (see the class doc)."""
        return self.stream(host_now_s - self.usb_latency_s)
