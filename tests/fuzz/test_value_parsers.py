"""Sysfs values, vcgencmd output and JLS windows under arbitrary input, and the CLI on garbage trees:
a value or None / a documented error, never another exception; the CLI ends in one line, non-zero."""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeexit.cli import main
from edgeexit.dvfs.controller import DvfsController
from edgeexit.energy.jls import jls_energy_windows
from edgeexit.energy.pi5_pmic import parse_pmic_read_adc
from edgeexit.energy.sysfs_values import read_number
from edgeexit.errors import DvfsError, MeterError
from edgeexit.guards import parse_measure_clock_hz
from edgeexit.guards.thermal import ThermalGuard
from edgeexit.sim.kernel import SIM_DIR
from edgeexit.sim.sysfs import SimulatedSysfs
from tests.fuzz.strategies import FUZZ
from tests.sim.helpers import make_tree

SYSFS_TEXT = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"\n", b"nan\n", b"<unknown>\n", b"-1\n", b"1e3\n", b"\xb2\n", b"99999999999999999999999\n",
                     b"1 2 x\n", b"  \n", b"0x10\n", b"\x00"]),
)
CPU = "sys/devices/system/cpu/cpufreq/policy0"
GPU = "sys/devices/gpu.0/devfreq/57000000.gpu"
ATTRS = [CPU + "/" + a for a in ("scaling_cur_freq", "scaling_min_freq", "scaling_max_freq", "scaling_governor",
                                 "scaling_available_frequencies", "scaling_available_governors", "scaling_setspeed")] + \
        [GPU + "/" + a for a in ("cur_freq", "min_freq", "max_freq", "available_frequencies", "governor")] + \
        ["sys/class/thermal/thermal_zone1/temp"]


@FUZZ
@given(SYSFS_TEXT)
def test_read_number(tmp_path_factory: Any, raw: bytes) -> None:
    p = tmp_path_factory.mktemp("v") / "in1_input"
    p.write_bytes(raw)
    v = read_number(p)
    assert v is None or math.isfinite(v)


@pytest.fixture(scope="module")
def nano(tmp_path_factory: Any):  # type: ignore[no-untyped-def]
    return make_tree(tmp_path_factory.mktemp("nano") / "t", "jetson-nano")


@FUZZ
@given(st.sampled_from(ATTRS), SYSFS_TEXT)
def test_controller_on_garbage_sysfs(nano: Any, attr: str, raw: bytes) -> None:
    path = nano.root / attr
    original = path.read_bytes()
    path.write_bytes(raw)
    try:
        ctl = DvfsController(nano.board, SimulatedSysfs(nano.root, nano), warn=lambda m: None,
                             guard=ThermalGuard(nano.board, SimulatedSysfs(nano.root, nano), warn=lambda m: None))
        for op in (ctl.cpu_opps_khz, ctl.cpu_khz, ctl.gpu_hz, ctl.snapshot,
                   lambda: [d.status() for d in ctl.domains], lambda: ctl.guard.check()):  # type: ignore[union-attr]
            try:
                op()
            except DvfsError as err:
                assert "\n" not in str(err)
    finally:
        path.write_bytes(original)


@FUZZ
@given(st.text(max_size=400))
def test_vcgencmd_outputs(text: str) -> None:
    current_ma, voltage_mv = parse_pmic_read_adc(text)
    assert all(math.isfinite(v) for v in list(current_ma.values()) + list(voltage_mv.values()))
    try:
        assert parse_measure_clock_hz(text) >= 0
    except ValueError:
        pass


@FUZZ
@given(st.lists(st.sampled_from([
    "VDD_CORE_A current(7)=0.75A", "VDD_CORE_V volt(15)=0.72V", "BATT_V volt(25)=nanV", "EXT5V_V volt(24)=5.1V",
    "x_A current(1)=-infA", "y_V volt(2)=1e999V", "frequency(0)=2000005120", "error=1 error_msg=\"x\"",
    "  3V3_SYS_A current(1)=0.1A  ", "_A current()=A"]), max_size=12))
def test_vcgencmd_line_mixes(lines: List[str]) -> None:
    text = "\n".join(lines)
    current_ma, voltage_mv = parse_pmic_read_adc(text)
    assert all(math.isfinite(v) for v in list(current_ma.values()) + list(voltage_mv.values()))


@pytest.fixture(scope="module")
def recording(tmp_path_factory: Any) -> Path:
    from tests.energy.test_jls import power_w, write_recording

    path = tmp_path_factory.mktemp("jls") / "run.jls"
    write_recording(path, {"power": ("W", power_w)}, seconds=1.0)
    return path


finite_or_not = st.one_of(st.floats(min_value=-1e12, max_value=1e12), st.floats(allow_nan=True, allow_infinity=True),
                          st.floats(min_value=99.0, max_value=102.0))


@FUZZ
@given(st.lists(st.tuples(finite_or_not, finite_or_not), max_size=4), finite_or_not)
def test_jls_windows(recording: Path, windows: Any, offset_s: float) -> None:
    try:
        out = jls_energy_windows(recording, windows, host_offset_s=offset_s if math.isfinite(offset_s) else 0.0)
    except MeterError as err:
        assert "\n" not in str(err)
        return
    for w in out:
        assert not w.valid or (math.isfinite(w.energy_mj) and w.energy_mj >= 0.0)


@FUZZ
@given(st.binary(max_size=200))
def test_jls_corrupt_file(tmp_path_factory: Any, raw: bytes) -> None:
    p = tmp_path_factory.mktemp("jls") / "bad.jls"
    p.write_bytes(raw)
    with pytest.raises(MeterError):
        jls_energy_windows(p, [(0.0, 1.0)])


def _cli(capsys: pytest.CaptureFixture, *args: str, may_succeed: bool = False) -> str:
    """The error line of a failing command (no traceback, exactly one line besides the simulated-board
    notice `run` prints first); "" when ``may_succeed`` and it did."""
    with pytest.raises(SystemExit) as info:
        main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if may_succeed and info.value.code in (0, None):
        return ""
    assert info.value.code not in (0, None), err
    lines = [l for l in err.splitlines() if l.strip() and not l.startswith(("INFO:", "edgeexit: board "))]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("attr,raw", [(CPU + "/scaling_cur_freq", b"<unknown>\n"),
                                      (CPU + "/scaling_available_frequencies", b"\n"),
                                      (GPU + "/max_freq", b"\xff\xfe\n")])
def test_cli_on_garbage_tree_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: Any,
                                         attr: str, raw: bytes) -> None:
    monkeypatch.setenv("EDGEEXIT_RUNTIME_DIR", str(tmp_path / "run"))
    k = make_tree(tmp_path / "t", "jetson-nano")
    shutil.rmtree(str(k.root / SIM_DIR))  # a board's own sysfs: a simulated kernel would undo the garbage
    (k.root / attr).write_bytes(raw)
    line = _cli(capsys, "status", "--board", "jetson-nano", "--sysfs-root", str(k.root), may_succeed=True)
    assert line == "" or attr in line
    line = _cli(capsys, "run", "--board", "jetson-nano", "--sysfs-root", str(k.root), "--cpu-khz", "max", "--limit", "3")
    assert "edgeexit: error:" in line and attr in line


@pytest.mark.parametrize("manifest", [b"", b"{", b"[]", b"\xff", b'{"schema_version": 1}', b'{"schema_version": 99}'])
def test_cli_on_garbage_manifest_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, manifest: bytes) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.json").write_bytes(manifest)
    assert "manifest" in _cli(capsys, "run", "--model", str(tmp_path / "m"), "--limit", "1")
