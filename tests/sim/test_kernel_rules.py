"""The simulated kernel's cpufreq/devfreq rules, for every board, in-process and through FUSE.

Expected behaviour per kernel family follows /work/shared/reference/boards-and-sysfs.md section 1.
"""
from __future__ import annotations

import errno
import os
from typing import List, Tuple

import pytest

from edgeexit.boards.sysfs import HostSysfs, Sysfs
from edgeexit.sim.kernel import SimulatedKernel
from tests.sim.helpers import within_limits

Sim = Tuple[Sysfs, SimulatedKernel]


def _errno_of(fn, *args) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as info:
        fn(*args)
    return int(info.value.errno)


def _policy(k: SimulatedKernel, i: int = 0) -> Tuple[str, List[int]]:
    pol = k.board.cpu_policies[i]
    return pol.relpath, k.profile.cpu_table(pol.name).freqs


def test_cpufreq_formats(sim: Sim) -> None:
    s, k = sim
    d, table = _policy(k)
    raw = (s.root / d / "scaling_available_frequencies").read_bytes()
    assert raw.endswith(b" \n") and [int(x) for x in raw.split()] == table  # trailing space [Kft]
    assert (s.root / d / "scaling_available_governors").read_bytes().endswith(b" \n")
    assert s.read(d + "/scaling_setspeed") == "<unsupported>"
    assert int(s.read(d + "/cpuinfo_max_freq")) == table[-1]
    assert s.read(d + "/scaling_governor") == k.profile.cpu.default_governor
    assert s.read("sys/devices/system/cpu/cpu0/cpufreq/related_cpus") == s.read(d + "/related_cpus")
    assert k.board.matches_model(s.read("proc/device-tree/model").rstrip("\0"))


def test_unknown_cpufreq_governor_is_einval(sim: Sim) -> None:
    s, k = sim
    d, _ = _policy(k)
    assert _errno_of(s.write, d + "/scaling_governor", "turbo") == errno.EINVAL
    s.write(d + "/scaling_governor", "performance")  # newline appended by write(): accepted
    assert s.read(d + "/scaling_governor") == "performance"


def test_setspeed_needs_userspace_and_rounds_up(sim: Sim) -> None:
    s, k = sim
    d, _ = _policy(k)
    table = within_limits(k)  # setspeed is clamped to the limits: the boot floor (Orin Nano) too [Kus]
    assert _errno_of(s.write, d + "/scaling_setspeed", table[1]) == errno.EINVAL
    cur = s.read(d + "/scaling_cur_freq")
    s.write(d + "/scaling_governor", "userspace")
    assert s.read(d + "/scaling_cur_freq") == cur  # switching to userspace keeps the frequency [Kus]
    assert s.read(d + "/scaling_setspeed") == cur
    s.write(d + "/scaling_setspeed", table[2] - 1)  # between entries: RELATION_L picks the next one up
    assert int(s.read(d + "/scaling_cur_freq")) == table[2]
    s.write(d + "/scaling_setspeed", table[-1] * 2)  # above max: clamped to max
    assert int(s.read(d + "/scaling_cur_freq")) == table[-1]
    assert _errno_of(s.write, d + "/scaling_setspeed", "fast") == errno.EINVAL
    s.write(d + "/scaling_governor", "schedutil" if "schedutil" in k.profile.cpu.available_governors else "ondemand")
    assert s.read(d + "/scaling_setspeed") == "<unsupported>"


def test_min_above_max_per_family(sim: Sim) -> None:
    s, k = sim
    d, table = _policy(k)
    s.write(d + "/scaling_max_freq", table[3])
    if k.family == "4.9":
        # L4T 4.9: EINVAL, nothing changes [K49]
        assert _errno_of(s.write, d + "/scaling_min_freq", table[5]) == errno.EINVAL
        assert int(s.read(d + "/scaling_min_freq")) == table[0]
    else:
        # 5.10+: a QoS request, resolved silently (min = max) [K510]
        s.write(d + "/scaling_min_freq", table[5])
        assert int(s.read(d + "/scaling_min_freq")) == table[3]
        s.write(d + "/scaling_max_freq", table[-1])  # the min request is remembered
        assert int(s.read(d + "/scaling_min_freq")) == table[5]
    assert int(s.read(d + "/scaling_max_freq")) in (table[3], table[-1])


def test_limits_clamped_and_rounded_per_family(sim: Sim) -> None:
    s, k = sim
    d, table = _policy(k)
    s.write(d + "/scaling_max_freq", 2147483647)  # nvpmodel's "no cap" works everywhere
    assert int(s.read(d + "/scaling_max_freq")) == table[-1]
    s.write(d + "/scaling_min_freq", 0)
    assert int(s.read(d + "/scaling_min_freq")) == table[0]
    between = table[2] - 1000
    s.write(d + "/scaling_min_freq", between)
    got = int(s.read(d + "/scaling_min_freq"))
    if k.family in ("5.15", "6.x"):
        assert got == table[2]  # resolved to a table entry [Kres]
    else:
        assert got == between  # stored as written [K49][K510]
    # the running frequency is always a table entry
    assert int(s.read(d + "/scaling_cur_freq")) in table


def test_number_parsing_per_family(sim: Sim) -> None:
    s, k = sim
    d, table = _policy(k)
    if k.family == "6.x":
        assert _errno_of(s.write, d + "/scaling_max_freq", "{}abc".format(table[-1])) == errno.EINVAL  # kstrtoul
    else:
        s.write(d + "/scaling_max_freq", "{}abc".format(table[-1]))  # sscanf stops at the junk
        assert int(s.read(d + "/scaling_max_freq")) == table[-1]
    assert _errno_of(s.write, d + "/scaling_max_freq", "abc") == errno.EINVAL


def test_read_only_attributes_and_new_files_are_eacces(sim: Sim) -> None:
    s, k = sim
    d, _ = _policy(k)
    assert _errno_of(s.write, d + "/scaling_cur_freq", "1") == errno.EACCES
    assert _errno_of(s.write, d + "/cpuinfo_max_freq", "1") == errno.EACCES
    assert _errno_of(s.write, d + "/no_such_attribute", "1") == errno.ENOENT


def test_missing_node_is_enoent_and_creating_one_eacces(sim: Sim) -> None:
    """open() without O_CREAT of a node that is not there is ENOENT, in-process as through FUSE and on the
    board; only creating a file is EACCES (sysfs has no create op)."""
    s, k = sim
    d, table = _policy(k)
    (k.root / d / "scaling_setspeed").unlink()  # a node the board's kernel does not have
    assert _errno_of(s.write, d + "/scaling_setspeed", table[1]) == errno.ENOENT
    assert not (k.root / d / "scaling_setspeed").exists()  # and it does not come back
    if isinstance(s, HostSysfs):  # a FUSE mount: creation is an open with O_CREAT
        assert _errno_of(os.open, str(s.root / d / "brand_new"), os.O_WRONLY | os.O_CREAT) == errno.EACCES


def test_offline_policy_refuses_writes(sim: Sim) -> None:
    s, k = sim
    pols = [p for p in k.board.cpu_policies if 0 not in p.cpus]
    cpu = "sys/devices/system/cpu/cpu{}/online"
    assert _errno_of(s.write, cpu.format(0), "0") == errno.EACCES  # cpu0 cannot go offline
    if not pols:
        s.write(cpu.format(1), "0")
        assert s.read(cpu.format(1)) == "0" and s.read("sys/devices/system/cpu/online").startswith("0")
        s.write(cpu.format(1), "1")
        return
    pol = pols[0]
    for c in pol.cpus:
        s.write(cpu.format(c), "0")
    assert _errno_of(s.write, pol.relpath + "/scaling_governor", "performance") == errno.EINVAL
    for c in pol.cpus:
        s.write(cpu.format(c), "1")
    s.write(pol.relpath + "/scaling_governor", "performance")


def test_devfreq_rules(sim: Sim) -> None:
    s, k = sim
    if k.board.gpu is None:
        assert not s.exists("sys/class/devfreq") or s.listdir("sys/class/devfreq") == []
        return
    d = "sys/class/devfreq/" + k.board.gpu.devfreq_name  # through the class symlink
    assert k.profile.gpu is not None
    table = k.profile.gpu.table.freqs
    raw = (s.root / d / "available_frequencies").read_bytes()
    assert raw.endswith(b"\n") and not raw.endswith(b" \n")  # devfreq trims the trailing space
    name = (s.root / d / "device/of_node/name").read_bytes()
    assert name.rstrip(b"\0").decode() in k.board.gpu.of_node_names
    code = _errno_of(s.write, d + "/governor", "turbo")
    assert code == (errno.ENODEV if k.family == "4.9" else errno.EINVAL)
    assert not s.exists(d + "/userspace/set_freq")
    # min above max
    s.write(d + "/max_freq", table[3])
    if k.family == "4.9":
        assert _errno_of(s.write, d + "/min_freq", table[5]) == errno.EINVAL
        assert int(s.read(d + "/min_freq")) == table[0]
    else:
        s.write(d + "/min_freq", table[5])
        assert int(s.read(d + "/min_freq")) == table[3]  # effective range: min = max
        s.write(d + "/min_freq", table[0])
    s.write(d + "/max_freq", table[-1] + 10 ** 9)
    assert int(s.read(d + "/max_freq")) == table[-1]
    # userspace governor: set_freq exists only while it runs, "undefined" until written
    s.write(d + "/governor", "userspace")
    assert s.read(d + "/userspace/set_freq") == "undefined"
    s.write(d + "/userspace/set_freq", table[2] - 1)
    assert int(s.read(d + "/cur_freq")) == table[2]  # ceil to the next OPP
    s.write(d + "/userspace/set_freq", table[-1] * 2)
    assert int(s.read(d + "/cur_freq")) == table[-1]  # clamped to max
    s.write(d + "/governor", k.profile.gpu.default_governor)
    assert not s.exists(d + "/userspace")


def test_devfreq_limits_per_family(sim: Sim) -> None:
    """min_freq/max_freq writes as each kernel stores them ([K49df] raw with EINVAL for ordering, [K510df] kHz
    QoS requests, min rounded down and max up); found untested by mutating the rules."""
    s, k = sim
    if k.board.gpu is None:  # no GPU clock in sysfs (the Pis): nothing to write
        assert not s.exists("sys/class/devfreq") or s.listdir("sys/class/devfreq") == []
        return
    d = "sys/class/devfreq/" + k.board.gpu.devfreq_name
    assert k.profile.gpu is not None
    table = k.profile.gpu.table.freqs
    if k.family == "4.9":
        s.write(d + "/max_freq", table[4])
        s.write(d + "/min_freq", table[4])  # equal is no ordering error
        assert int(s.read(d + "/min_freq")) == table[4]
        s.write(d + "/min_freq", table[1] + 7)  # stored raw, read back as written
        assert int(s.read(d + "/min_freq")) == table[1] + 7
        assert _errno_of(s.write, d + "/max_freq", table[1]) == errno.EINVAL  # below min: refused, nothing changes
        assert int(s.read(d + "/max_freq")) == table[4]
        s.write(d + "/min_freq", 1)  # below the table: raised to its bottom
        assert int(s.read(d + "/min_freq")) == table[0]
    else:
        s.write(d + "/max_freq", table[4] + 1)  # rounded up to the next kHz
        assert int(s.read(d + "/max_freq")) == table[4] + 1000
        s.write(d + "/min_freq", table[1] + 999)  # rounded down
        assert int(s.read(d + "/min_freq")) == table[1]
        s.write(d + "/max_freq", table[1] - 1)  # below min: no error; the effective min drops to the max
        assert int(s.read(d + "/min_freq")) == int(s.read(d + "/max_freq")) == table[1]
        s.write(d + "/max_freq", 0)  # no limit
        assert int(s.read(d + "/max_freq")) == table[-1] and int(s.read(d + "/min_freq")) == table[1]


def test_thermal_and_sensor_layout(sim: Sim) -> None:
    s, k = sim
    for z in k.board.thermal_zones:
        assert s.read(z.relpath + "/type") == z.type
        if z.read_errno:
            assert _errno_of(s.read, z.relpath + "/temp") == getattr(errno, z.read_errno)
        else:
            assert 0 < int(s.read(z.relpath + "/temp")) < 120000
    z0 = k.board.thermal_zones[0]
    k.set_temp_mc(z0.type, 71500)
    if not z0.read_errno:
        assert s.read(z0.relpath + "/temp") == "71500"
    power = k.board.power
    if power.sensor == "none":
        return
    rail = power.rails()[0]
    k.set_rail(rail, 5080.0, 1234.0)
    for chip in power.ina3221:
        if rail not in chip.channels:
            continue
        ch = chip.channels.index(rail)
        if chip.driver == "ina3221x":  # JetPack 4 IIO, 0-based, with a power file
            assert s.read("{}/rail_name_{}".format(chip.relpath, ch)) == rail
            assert s.read("{}/in_voltage{}_input".format(chip.relpath, ch)) == "5080"
            assert s.read("{}/in_current{}_input".format(chip.relpath, ch)) == "1234"
            assert s.read("{}/in_power{}_input".format(chip.relpath, ch)) == str(5080 * 1234 // 1000)
        else:  # JetPack 5+ hwmon, 1-based, no power file
            assert s.read("{}/in{}_label".format(chip.relpath, ch + 1)) == rail
            assert s.read("{}/in{}_input".format(chip.relpath, ch + 1)) == "5080"
            assert s.read("{}/curr{}_input".format(chip.relpath, ch + 1)) == "1234"
            assert s.read(chip.relpath + "/in7_label") == "sum of shunt voltages"
            assert not s.exists("{}/power{}_input".format(chip.relpath, ch + 1))
    if power.sensor == "pi5-pmic":
        text = (k.root / ".edgeexit-sim/vcgencmd/pmic_read_adc").read_text()
        assert "{}_A current(0)=1.23400000A".format(rail) in text
    with pytest.raises(KeyError):
        k.set_rail("NO_SUCH_RAIL", 1.0, 1.0)


def test_a_deleted_rail_file_stays_deleted(sim: Sim) -> None:
    """Review finding: publishing a reading (every run does) re-created the INA3221 files someone had deleted,
    so a run erased the missing-sensor case it was meant to meet. The driver's files of a not-connected channel
    are all there: in1-in6 (bus and shunt voltage) for every channel, on hwmon."""
    s, k = sim
    power = k.board.power
    if not power.ina3221:
        return
    chip = power.ina3221[0]
    ch = next(i for i, label in enumerate(chip.channels) if label != "NC")
    rel = ("{}/in_current{}_input" if chip.driver == "ina3221x" else "{}/curr{}_input").format(
        chip.relpath, ch if chip.driver == "ina3221x" else ch + 1)
    os.unlink(str(k.root / rel))
    k.set_rail(chip.channels[ch], 5000.0, 321.0)
    assert not s.exists(rel)
    for c in power.ina3221:
        if c.driver != "ina3221x":
            assert all(s.exists("{}/in{}_input".format(c.relpath, n)) for n in range(1, 8)), c.relpath


def test_state_survives_the_process(sim: Sim) -> None:
    """A new kernel object on the same tree sees what the previous one wrote."""
    s, k = sim
    d, table = _policy(k)
    s.write(d + "/scaling_governor", "userspace")
    table = within_limits(k)
    s.write(d + "/scaling_setspeed", table[1])
    again = SimulatedKernel(k.root)
    again.write(d + "/scaling_max_freq", str(table[-1]).encode())
    assert int(s.read(d + "/scaling_cur_freq")) == table[1]


def test_signed_numbers_per_family(sim: Sim) -> None:
    """vsscanf's %u/%lu takes no sign ('-1' and '+5' are EINVAL); 6.x's kstrtoul takes one '+' [Kkstr]."""
    s, k = sim
    d, table = _policy(k)
    boot_min = s.read(d + "/scaling_min_freq")  # the default nvpmodel mode's floor (Orin Nano 729600)
    boot_max = s.read(d + "/scaling_max_freq")  # and its cap (AGX Orin's MODE_30W: 1728000)
    for attr in ("scaling_min_freq", "scaling_max_freq"):
        assert _errno_of(s.write, d + "/" + attr, "-1") == errno.EINVAL  # never wraps to the table top
    plus = "+{}".format(table[-2])
    if k.family == "6.x":
        s.write(d + "/scaling_max_freq", plus)
        assert int(s.read(d + "/scaling_max_freq")) == table[-2]
        s.write(d + "/scaling_max_freq", boot_max)
    else:
        assert _errno_of(s.write, d + "/scaling_max_freq", plus) == errno.EINVAL
    assert s.read(d + "/scaling_max_freq") == boot_max and s.read(d + "/scaling_min_freq") == boot_min
    s.write(d + "/scaling_governor", "userspace")
    cur = s.read(d + "/scaling_cur_freq")
    for bad in ("-1", "+{}".format(table[1])):  # store_scaling_setspeed: sscanf("%u") in every kernel
        assert _errno_of(s.write, d + "/scaling_setspeed", bad) == errno.EINVAL
    assert s.read(d + "/scaling_cur_freq") == cur
    if k.board.gpu is None:
        return
    assert k.profile.gpu is not None
    g = "sys/class/devfreq/" + k.board.gpu.devfreq_name
    gtable = k.profile.gpu.table.freqs
    boot = (s.read(g + "/min_freq"), s.read(g + "/max_freq"))  # the default nvpmodel mode may cap max (TX2)
    for attr in ("min_freq", "max_freq"):  # devfreq: sscanf("%lu") in every kernel
        for bad in ("-1", "+{}".format(gtable[1])):
            assert _errno_of(s.write, g + "/" + attr, bad) == errno.EINVAL
    assert (s.read(g + "/min_freq"), s.read(g + "/max_freq")) == boot


@pytest.mark.parametrize("family,text,value", [
    ("4.9", " 900000abc\n", 900000), ("5.15", "\t5\n", 5), ("4.9", "-1\n", None), ("5.10", "+5\n", None),
    ("4.9", "- 5", None), ("6.x", "+5\n", 5), ("6.x", "-5\n", None), ("6.x", "5\n\n", None), ("6.x", " 5\n", None),
    # 4.9's %u keeps the low 32 bits; 5.10's %lu is 64-bit (wraps past 2^64 - 1), then clamped to INT_MAX
    ("4.9", "{}\n".format(2 ** 32 + 500000), 500000), ("5.10", "{}\n".format(2 ** 32 + 5), 2 ** 31 - 1),
    ("5.15", "{}\n".format(2 ** 64 + 5), 5),
])
def test_parse_uint(family: str, text: str, value: object) -> None:
    from edgeexit.sim.rules import parse_uint

    if value is None:
        with pytest.raises(OSError) as info:
            parse_uint(family, text, "x")
        assert info.value.errno == errno.EINVAL
    else:
        assert parse_uint(family, text, "x") == value


def test_kstrtoul_is_erange_past_an_unsigned_long() -> None:
    from edgeexit.sim.rules import parse_uint

    with pytest.raises(OSError) as info:
        parse_uint("6.x", "{}\n".format(2 ** 64 + 1600000), "x")  # kstrtoul: -ERANGE on overflow [Kkstr]
    assert info.value.errno == errno.ERANGE
    assert parse_uint("6.x", "{}\n".format(2 ** 64 - 1 - 2 ** 32 + 1600000 + 1), "x") == 1600000  # fits: wraps as s32


def test_numbers_past_the_conversion_width_per_family(sim: Sim) -> None:
    """4.9 stores %u's low 32 bits; 5.10-5.15's %lu is 64-bit; 6.x's kstrtoul refuses past 2^64 - 1 with
    ERANGE; scaling_setspeed is %u everywhere [K49][K510][Kkstr]."""
    s, k = sim
    d, table = _policy(k)
    rel = d + "/scaling_max_freq"
    if k.family == "6.x":
        assert _errno_of(s.write, rel, 2 ** 64 + table[1]) == errno.ERANGE
        assert int(s.read(rel)) == table[-1]  # unchanged
    elif k.family == "4.9":
        s.write(rel, 2 ** 32 + table[1])
        assert int(s.read(rel)) == table[1]
    else:
        s.write(rel, 2 ** 32 + table[1])  # fits %lu: above INT_MAX, so the top
        assert int(s.read(rel)) == table[-1]
        s.write(rel, 2 ** 64 + table[1])  # past it: wraps
        assert int(s.read(rel)) == table[1]
    s.write(rel, table[-1])
    s.write(d + "/scaling_governor", "userspace")
    ok = within_limits(k)
    s.write(d + "/scaling_setspeed", 2 ** 32 + ok[1])
    assert int(s.read(d + "/scaling_cur_freq")) == ok[1]
