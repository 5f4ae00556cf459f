"""devfreq nodes the reference lists beyond the frequency files: trans_stat (every devfreq device),
timer (5.10+), and the Jetson GPU device's enable_3d_scaling and power/control [K49df][K510df][JS:gpu]."""
from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from edgeexit.sim.sysfs import SimulatedSysfs
from tests.sim.helpers import BOARDS, make_tree


@pytest.mark.parametrize("board", BOARDS)
def test_devfreq_reference_nodes(tmp_path: Path, board: str) -> None:
    k = make_tree(tmp_path / "t", board)
    s = SimulatedSysfs(k.root, k)
    if k.board.gpu is None or k.profile.gpu is None:
        return
    g = "sys/class/devfreq/" + k.board.gpu.devfreq_name
    table = k.profile.gpu.table.freqs
    lines = s.read(g + "/trans_stat").split("\n")
    head = lines[1][len("           :"):-len("   time(ms)")]  # "%10lu" each: 10-digit Hz values touch
    assert lines[0] == "     From  :   To" and [int(head[i:i + 10]) for i in range(0, len(head), 10)] == table
    assert lines[-1] == "Total transition : 0" and len(lines) == len(table) + 3
    marked = [ln for ln in lines[2:-1] if ln.startswith("*")]
    assert len(marked) == 1 and int(marked[0][1:].split(":")[0]) == int(s.read(g + "/cur_freq"))
    s.write(g + "/governor", "performance")  # the '*' follows the running OPP
    marked = [ln for ln in s.read(g + "/trans_stat").split("\n") if ln.startswith("*")]
    assert int(marked[0][1:].split(":")[0]) == int(s.read(g + "/cur_freq")) > table[0]
    if k.family == "4.9":
        assert not s.exists(g + "/timer")
    else:
        assert s.read(g + "/timer") == "deferrable"
    dev = g + "/device"
    assert s.read(dev + "/enable_3d_scaling") == "1" and s.read(dev + "/power/control") == "auto"
    s.write(dev + "/enable_3d_scaling", "0")  # stored as written
    s.write(dev + "/power/control", "on")
    assert s.read(dev + "/enable_3d_scaling") == "0" and s.read(dev + "/power/control") == "on"
    for ro in ("trans_stat",) + (("timer",) if k.family != "4.9" else ()):
        with pytest.raises(OSError) as info:
            s.write(g + "/" + ro, "0")
        assert info.value.errno == errno.EACCES


@pytest.mark.parametrize("board", BOARDS)
def test_gpu_of_node_name_is_the_device_node_name(tmp_path: Path, board: str) -> None:
    """A device-tree device is named <unit address>.<node name>: the Nano's 57000000.gpu is "gpu" and the
    TX2's 17000000.gp10b "gp10b" [JC], so JetPack 6's 17000000.gpu on the Orin [ONS] is "gpu". jetson_clocks
    finds the GPU by that name under sys/class/devfreq [JC]."""
    from edgeexit.dvfs.domains import find_gpu

    k = make_tree(tmp_path / "t", board)
    if k.board.gpu is None:
        return
    dev = Path(os.path.realpath(str(k.root / k.board.gpu.devfreq_paths[0] / "device")))
    name = (dev / "of_node/name").read_bytes().rstrip(b"\0").decode()
    m = re.match(r"^[0-9a-f]+\.([A-Za-z0-9_]+)$", dev.name)
    if m:  # "gpu.0" (the Nano's nvhost device) is no such name
        assert name == m.group(1)
    assert find_gpu(SimulatedSysfs(k.root, k), [], k.board.gpu.of_node_names) == \
        "sys/class/devfreq/" + k.board.gpu.devfreq_name
