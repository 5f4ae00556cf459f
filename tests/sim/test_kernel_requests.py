"""What the simulated kernel keeps apart from what it shows: 4.9's requested cpufreq pair, the userspace
governor's set and limit paths, devfreq's max 0, polling_interval parsing, 6.x's s32 QoS check, and the
default nvpmodel mode's caps at boot. Per /work/shared/reference/boards-and-sysfs.md section 1.
"""
from __future__ import annotations

import errno
from pathlib import Path
from typing import List, Tuple

import pytest

from edgeexit.boards.sysfs import Sysfs
from edgeexit.sim.kernel import SimulatedKernel
from edgeexit.sim.sysfs import SimulatedSysfs
from tests.sim.helpers import BOARDS, make_tree

Sim = Tuple[Sysfs, SimulatedKernel]


def _errno_of(fn, *args) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as info:
        fn(*args)
    return int(info.value.errno)


def _policy(k: SimulatedKernel) -> Tuple[str, List[int]]:
    pol = k.board.cpu_policies[0]
    return pol.relpath, k.profile.cpu_table(pol.name).freqs


def _between(table: List[int]) -> Tuple[int, int, int]:
    """(lo, v, hi): two neighbouring table entries in the middle and a non-table value between them."""
    i = len(table) // 2
    return table[i], (table[i] + table[i + 1]) // 2, table[i + 1]


def test_nano_49_checks_min_against_the_requested_max(tmp_path: Path) -> None:
    """The auditor's example: max 918000 then min 918000 shows max 921600 (table bump), but the request
    is still 918000, so min 921600 is EINVAL [K49]."""
    k = make_tree(tmp_path / "t", "jetson-nano")
    s = SimulatedSysfs(k.root, k)
    d, _ = _policy(k)
    s.write(d + "/scaling_max_freq", 918000)
    s.write(d + "/scaling_min_freq", 918000)
    assert (s.read(d + "/scaling_min_freq"), s.read(d + "/scaling_max_freq")) == ("918000", "921600")
    assert _errno_of(s.write, d + "/scaling_min_freq", 921600) == errno.EINVAL
    assert (s.read(d + "/scaling_min_freq"), s.read(d + "/scaling_max_freq")) == ("918000", "921600")
    s.write(d + "/scaling_max_freq", 921600)  # raising the request first lets it through
    s.write(d + "/scaling_min_freq", 921600)
    assert (s.read(d + "/scaling_min_freq"), s.read(d + "/scaling_max_freq")) == ("921600", "921600")


def test_min_above_the_requested_max_per_family(sim: Sim) -> None:
    s, k = sim
    d, table = _policy(k)
    _, v, hi = _between(table)
    s.write(d + "/scaling_max_freq", v)
    s.write(d + "/scaling_min_freq", v)
    if k.family == "4.9":
        assert int(s.read(d + "/scaling_max_freq")) == hi  # bumped to the next entry [Kft]
        assert _errno_of(s.write, d + "/scaling_min_freq", hi) == errno.EINVAL
        assert int(s.read(d + "/scaling_min_freq")) == v
    else:
        s.write(d + "/scaling_min_freq", hi)  # a QoS request: never EINVAL for ordering [K510]


def test_userspace_set_uses_relation_l_and_a_limit_change_relation_h(sim: Sim) -> None:
    """Set path: the target clamped to [min, max], then RELATION_L; limit path: max < setspeed -> max
    with RELATION_H [Kus]. With a non-table max (4.9/5.10 keep it as written) they differ."""
    s, k = sim
    d, table = _policy(k)
    lo, v, hi = _between(table)
    s.write(d + "/scaling_max_freq", v)
    s.write(d + "/scaling_governor", "userspace")
    s.write(d + "/scaling_setspeed", table[-1])
    stored_as_written = k.family in ("4.9", "5.10")
    assert int(s.read(d + "/scaling_cur_freq")) == (hi if stored_as_written else lo)
    s.write(d + "/scaling_max_freq", v)  # the same limit again: the limits callback runs
    assert int(s.read(d + "/scaling_cur_freq")) == lo
    s.write(d + "/scaling_setspeed", table[-1])
    assert int(s.read(d + "/scaling_cur_freq")) == (hi if stored_as_written else lo)


def test_nano_setspeed_above_a_non_table_max(tmp_path: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-nano")
    s = SimulatedSysfs(k.root, k)
    d, _ = _policy(k)
    s.write(d + "/scaling_max_freq", 918000)
    s.write(d + "/scaling_governor", "userspace")
    s.write(d + "/scaling_setspeed", 1479000)
    assert s.read(d + "/scaling_cur_freq") == "921600"  # clamp to 918000, then the lowest entry >= it
    s.write(d + "/scaling_max_freq", 918000)
    assert s.read(d + "/scaling_cur_freq") == "825600"  # limit change: RELATION_H on max


def test_devfreq_max_zero_is_no_limit(sim: Sim) -> None:
    """4.9 accepts max_freq 0 (EINVAL only when both are non-zero) and keeps it as no limit [K49df];
    5.10+ reads 0 as no limit too [K510df]."""
    s, k = sim
    if k.board.gpu is None or k.profile.gpu is None:
        return
    g = "sys/class/devfreq/" + k.board.gpu.devfreq_name
    table = k.profile.gpu.table.freqs
    s.write(g + "/max_freq", table[3])
    s.write(g + "/max_freq", 0)
    assert int(s.read(g + "/max_freq")) == (0 if k.family == "4.9" else table[-1])
    s.write(g + "/governor", "performance")
    assert int(s.read(g + "/cur_freq")) == table[-1]
    s.write(g + "/governor", "userspace")
    s.write(g + "/userspace/set_freq", table[-1])
    assert int(s.read(g + "/cur_freq")) == table[-1]
    s.write(g + "/min_freq", table[2])  # min against a max of 0: no ordering check
    assert int(s.read(g + "/min_freq")) == table[2]


def test_polling_interval_is_parsed_as_unsigned(sim: Sim) -> None:
    s, k = sim
    if k.board.gpu is None:
        return
    g = "sys/class/devfreq/" + k.board.gpu.devfreq_name
    before = s.read(g + "/polling_interval")
    for junk in ("junk", "-5", ""):
        assert _errno_of(s.write, g + "/polling_interval", junk) == errno.EINVAL
    assert s.read(g + "/polling_interval") == before
    s.write(g + "/polling_interval", "50ms")  # sscanf("%u") stops at the junk
    assert s.read(g + "/polling_interval") == "50"


def test_values_negative_as_s32_per_family(sim: Sim) -> None:
    """6.x's frequency QoS refuses a value that is negative as s32 [Kqos]; older families clamp it."""
    s, k = sim
    d, table = _policy(k)
    s.write(d + "/scaling_max_freq", table[-2])
    if k.family == "6.x":
        for big in (2 ** 31, 2 ** 32 - 1):
            assert _errno_of(s.write, d + "/scaling_max_freq", big) == errno.EINVAL
        assert int(s.read(d + "/scaling_max_freq")) == table[-2]
        s.write(d + "/scaling_max_freq", 2 ** 32 + table[1])  # wraps to a small s32
        assert int(s.read(d + "/scaling_max_freq")) == table[1]
    else:
        s.write(d + "/scaling_max_freq", 2 ** 31)
        assert int(s.read(d + "/scaling_max_freq")) == table[-1]


@pytest.mark.parametrize("board", BOARDS)
def test_boot_applies_the_default_modes_caps(tmp_path: Path, board: str) -> None:
    """nvpmodel writes the default mode's CPU and GPU max at boot; TX2 MAXP_CORE_ARM shows GPU MaxFreq
    1134750000 [JS:jc-emu]."""
    k = make_tree(tmp_path / "t", board)
    mode = next((m for m in k.profile.nvpmodel_modes if m.id == k.profile.nvpmodel_default), None)
    for pol in k.board.cpu_policies:
        table = k.profile.cpu_table(pol.name).freqs
        online = any((k.root / "sys/devices/system/cpu/cpu{}/online".format(c)).read_text() == "1\n" for c in pol.cpus)
        cap = mode.cpu_max_khz if mode is not None and online else None
        want = table[-1] if cap is None else max(f for f in table if f <= cap)
        assert int((k.root / pol.relpath / "scaling_max_freq").read_text()) == want
    if k.board.gpu is not None and k.profile.gpu is not None:
        table = k.profile.gpu.table.freqs
        cap = mode.gpu_max_hz if mode is not None else None
        shown = int((k.root / k.board.gpu.devfreq_paths[0] / "max_freq").read_text())
        assert shown == (table[-1] if cap is None else min(cap, table[-1]))
    if board == "jetson-tx2":
        assert (k.root / "sys/devices/17000000.gp10b/devfreq/17000000.gp10b/max_freq").read_text() == "1134750000\n"


@pytest.mark.parametrize("board", BOARDS)
def test_boot_applies_the_default_modes_cpu_floor(tmp_path: Path, board: str) -> None:
    """nvpmodel writes the mode's CPU MIN_FREQ to every cluster at boot: 729600 on the Orin Nano
    [LOS][JS:nvp-emu]; an idle board's load-driven governor runs that floor."""
    k = make_tree(tmp_path / "t", board)
    mode = next((m for m in k.profile.nvpmodel_modes if m.id == k.profile.nvpmodel_default), None)
    floor = mode.cpu_min_khz if mode is not None else None
    if board == "jetson-orin-nano":
        assert floor == 729600
    for pol in k.board.cpu_policies:
        table = k.profile.cpu_table(pol.name).freqs
        online = any((k.root / "sys/devices/system/cpu/cpu{}/online".format(c)).read_text() == "1\n" for c in pol.cpus)
        want = table[0] if floor is None or not online else min(f for f in table if f >= floor)
        assert int((k.root / pol.relpath / "scaling_min_freq").read_text()) == want
        if online and k.profile.cpu.default_governor != "performance":
            assert int((k.root / pol.relpath / "scaling_cur_freq").read_text()) == want
