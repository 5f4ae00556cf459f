"""``edgeexit sim init``: lay out a board's sysfs tree with its real paths, units and formats."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List

from edgeexit.boards.config import NOT_CONNECTED, BoardConfig
from edgeexit.boards.profile import FirmwareProfile
from edgeexit.errors import DvfsError
from edgeexit.sim import rules
from edgeexit.sim.kernel import CPU_DIR, MARKER, MARKER_FORMAT, RW, SimulatedKernel, profile_digest
from edgeexit.sim.physics import BoardPhysics
from edgeexit.sim.sensors import bus_voltage_mv, publish_idle

IDLE_TEMP_MC = 40000


def _symlink(root: Path, rel: str, target: str) -> None:
    link = root / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(str(link)):
        os.symlink(target, str(link))


def boot_online_cpus(board: BoardConfig, profile: FirmwareProfile) -> List[int]:
    """The CPUs online at boot: all of them, or as many as the default nvpmodel mode keeps.

    nvpmodel takes whole clusters offline, the last policy's first: TX2 MAXP_CORE_ARM (4 CPUs) keeps
    the A57 policy (cpu0, cpu3-5) and leaves the Denver cores cpu1-2 offline, as the reference says.
    cpu0 is never offline.
    """
    every = list(range(board.possible_cpus))
    mode = next((m for m in profile.nvpmodel_modes if m.id == profile.nvpmodel_default), None)
    if mode is None or mode.online_cpus >= len(every):
        return every
    order = [c for pol in board.cpu_policies for c in pol.cpus]
    order = [0] + [c for c in order + every if c != 0]
    return sorted(set(order[:max(mode.online_cpus, 1)]))


def initial_state(board: BoardConfig, profile: FirmwareProfile) -> Dict[str, Any]:
    """Boot state: the default nvpmodel mode applied (its CPUs online, its CPU and GPU max caps and CPU
    floor written as nvpmodel writes them), default governors, idle frequency. Requests equal the
    effective limits so that writing back what was read leaves the tree byte-identical."""
    family = board.kernel
    online = boot_online_cpus(board, profile)
    mode = next((m for m in profile.nvpmodel_modes if m.id == profile.nvpmodel_default), None)
    state = {"online": {str(c): int(c in online) for c in range(board.possible_cpus)}, "cpufreq": {},
             "devfreq": None, "pmic": {}}  # type: Dict[str, Any]
    for pol in board.cpu_policies:
        table = profile.cpu_table(pol.name).freqs
        gov = profile.cpu.default_governor
        lo, hi = table[0], table[-1]
        # nvpmodel writes the cap to scaling_max_freq; the kernel refuses it for a policy with every CPU offline
        if mode is not None and any(c in online for c in pol.cpus):
            # max first: on 4.9 a min above the requested max is EINVAL (the profile keeps min <= max)
            for which, value in (("max", mode.cpu_max_khz), ("min", mode.cpu_min_khz)):
                if value is not None:
                    lo, hi = rules.cpufreq_store_limit(family, table, which, value, lo, hi)
                    lo, hi = rules.cpufreq_effective(family, table, lo, hi)
        cur = rules.cpufreq_cur(gov, table, lo, hi, None)
        state["cpufreq"][pol.name] = {"governor": gov, "min": lo, "max": hi, "setspeed": None, "cur": cur}
    if profile.gpu is not None:
        table = profile.gpu.table.freqs
        if family == "4.9":
            lo, hi = table[0], table[-1]
        else:  # QoS requests in kHz
            lo, hi = table[0] // 1000, -(-table[-1] // 1000)
        if mode is not None and mode.gpu_max_hz is not None:  # nvpmodel's GPU MAX_FREQ -> max_freq
            lo, hi = rules.devfreq_store_limit(family, table, "max", mode.gpu_max_hz, lo, hi)
        gov = profile.gpu.default_governor
        eff_lo, eff_hi = rules.devfreq_effective(family, table, lo, hi)
        cur = rules.devfreq_cur(family, gov, table, eff_lo, eff_hi, None, table[0])
        state["devfreq"] = {"governor": gov, "min": lo, "max": hi, "set_freq": None, "cur": cur}
    return state


def build_tree(root: Path, board: BoardConfig, profile: FirmwareProfile) -> SimulatedKernel:
    """Create the tree under ``root`` (must be empty or absent) and return its kernel."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise DvfsError("{} is not empty; `edgeexit sim init` needs an empty or new directory".format(root))
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).parent.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(json.dumps({
        "format": MARKER_FORMAT, "board": board.name, "kernel_family": board.kernel,
        "kernel_version": board.kernel_version, "simulated": True, "profile_digest": profile_digest(profile),
    }, indent=1, sort_keys=True) + "\n")
    k = SimulatedKernel(root, board, profile)
    put = k.put

    # device tree model, NUL-terminated; /proc/device-tree links to /sys/firmware/devicetree/base
    put("sys/firmware/devicetree/base/model", board.device_tree_model + "\0")
    _symlink(root, "proc/device-tree", "../sys/firmware/devicetree/base")

    # CPUs and cpufreq policies (static files; the dynamic ones come from render())
    all_cpus = list(range(board.possible_cpus))
    put(CPU_DIR + "/possible", "0-{}\n".format(board.possible_cpus - 1))
    put(CPU_DIR + "/present", "0-{}\n".format(board.possible_cpus - 1))
    for rel, content in k.static_nodes():  # policy tables, GPU lists
        put(rel, content)
    for pol in board.cpu_policies:
        for c in pol.cpus:
            _symlink(root, "{}/cpu{}/cpufreq".format(CPU_DIR, c), "../cpufreq/" + pol.name)
    assert sorted(all_cpus) == all_cpus

    # GPU devfreq device (the first path: this board's JetPack), its device dir and class link
    if board.gpu is not None and profile.gpu is not None:
        d = board.gpu.devfreq_paths[0]
        gpu = profile.gpu
        put(d + "/polling_interval", "{}\n".format(gpu.polling_interval_ms), RW)
        parent = d.rsplit("/", 1)[0]
        device_dir = parent.rsplit("/", 1)[0] if parent.endswith("/devfreq") else parent
        _symlink(root, d + "/device", os.path.relpath(device_dir, d))
        if board.gpu.of_node_names:  # the first name is the first path's device's (see the board configs)
            put(device_dir + "/of_node/name", board.gpu.of_node_names[0] + "\0")
        put(device_dir + "/railgate_enable", "1\n", RW)
        put(device_dir + "/load", "0\n")
        # listed under the device dir [JS:gpu]; values are assumptions (3D scaling on, runtime PM "auto"),
        # stored as written: jtop toggles 3D scaling, a restore wrapper writes power/control back [VIC]
        put(device_dir + "/enable_3d_scaling", "1\n", RW)
        put(device_dir + "/power/control", "auto\n", RW)
        _symlink(root, "sys/class/devfreq/" + board.gpu.devfreq_name,
                 os.path.relpath(d, "sys/class/devfreq"))

    if board.emc is not None:
        put(board.emc.rate_path, "{}\n".format(profile.emc_freq_hz[-1] if profile.emc_freq_hz else 0))
        if board.emc.cap_path:
            put(board.emc.cap_path, "0\n")

    # thermal zones, m°C
    for z in board.thermal_zones:
        put(z.relpath + "/type", z.type + "\n")
        put(z.relpath + "/temp", "{}\n".format(IDLE_TEMP_MC + 500 * z.index))
        put(z.relpath + "/policy", "step_wise\n")
        for i, (t, kind) in enumerate(zip(z.trips_mc, z.trip_types)):
            put("{}/trip_point_{}_temp".format(z.relpath, i), "{}\n".format(t))
            put("{}/trip_point_{}_type".format(z.relpath, i), kind + "\n")

    # INA3221 sensors in the real per-driver layout
    for chip in board.power.ina3221:
        base = chip.relpath
        if chip.driver == "ina3221x":  # JetPack 4 IIO [K49ina]
            put(base + "/name", "ina3221x\n")
            put(base + "/running_mode", "1\n", RW)
            for ch, label in enumerate(chip.channels):
                put("{}/rail_name_{}".format(base, ch), label + "\n")
                put("{}/in_current{}_trigger_input".format(base, ch), "0\n")
                put("{}/in_power{}_trigger_input".format(base, ch), "0\n")
                put("{}/warn_current_limit_{}".format(base, ch), "3000 ma\n", RW)
                put("{}/crit_current_limit_{}".format(base, ch), "4000 ma\n", RW)
                put("{}/crit_power_limit_{}".format(base, ch), "20000 mw\n", RW)
        else:  # JetPack 5+ hwmon [Kina]
            put(base + "/name", "ina3221\n")
            # the mainline driver's default CONFIG 0x7127: 3 channels x (1.1 + 1.1) ms, no averaging [Kina]
            put(base + "/update_interval", "7\n", RW)
            put(base + "/samples", "1\n", RW)
            put(base + "/in7_label", "sum of shunt voltages\n")
            put(base + "/curr4_crit_alarm", "0\n")  # the summation channel's alarm (V [ONS])
            for ch, label in enumerate(chip.channels, start=1):
                put("{}/in{}_label".format(base, ch), label + "\n")
                put("{}/curr{}_max".format(base, ch), "6480\n", RW)
                put("{}/curr{}_crit".format(base, ch), "7000\n", RW)
                put("{}/curr{}_max_alarm".format(base, ch), "0\n")
                put("{}/curr{}_crit_alarm".format(base, ch), "0\n")
                if label == NOT_CONNECTED:  # nothing on the shunt: reads 0 (set_rail finds rails by label)
                    put("{}/in{}_input".format(base, ch), "0\n")
                    put("{}/in{}_input".format(base, ch + 3), "0\n")  # its shunt voltage: the driver shows in1-in6
                    put("{}/curr{}_input".format(base, ch), "0\n")
        for label in chip.channels:
            if label != NOT_CONNECTED:
                k.set_rail(label, bus_voltage_mv(profile.power_model.rail_voltage_mv, label), 0.0, create=True)

    state = initial_state(board, profile)
    k.save_state(state)
    k.render(state, create=True)
    publish_idle(k, board, BoardPhysics(profile))
    return k
