"""What the simulated tree keeps from its boot and from the people using it: the default nvpmodel
mode's online CPUs, and each node's mode and owner across the kernel's re-rendering."""
from __future__ import annotations

import errno
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Tuple

import pytest

from edgeexit.boards.sysfs import Sysfs
from edgeexit.sim.kernel import SimulatedKernel
from edgeexit.sim.tree import boot_online_cpus
from tests.sim.helpers import BOARDS, chown_tree, fork_as, make_tree

CPU = "sys/devices/system/cpu"


def test_tx2_boots_in_maxp_core_arm_with_denver_offline(tmp_path: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-tx2")
    assert k.profile.nvpmodel_default == 3  # MAXP_CORE_ARM: "Denver offline" [JS:jc-emu]
    assert (k.root / CPU / "online").read_text() == "0,3-5\n"
    assert [(k.root / CPU / "cpu{}/online".format(c)).read_text() for c in range(6)] == ["1\n", "0\n", "0\n", "1\n",
                                                                                        "1\n", "1\n"]
    assert (k.root / CPU / "cpufreq/policy1/affected_cpus").read_text() == "\n"
    assert (k.root / CPU / "cpufreq/policy1/related_cpus").read_text() == "1 2\n"
    with pytest.raises(OSError) as info:  # the store() wrapper refuses an offline policy [K49]
        k.write(CPU + "/cpufreq/policy1/scaling_governor", b"userspace\n")
    assert info.value.errno == errno.EINVAL


@pytest.mark.parametrize("board", BOARDS)
def test_boot_online_cpus_follow_the_default_mode(tmp_path: Path, board: str) -> None:
    k = make_tree(tmp_path / "t", board)
    online = boot_online_cpus(k.board, k.profile)
    modes = {m.id: m for m in k.profile.nvpmodel_modes}
    want = modes[k.profile.nvpmodel_default].online_cpus if modes else k.board.possible_cpus
    assert 0 in online and len(online) == min(want, k.board.possible_cpus)
    for c in range(k.board.possible_cpus):
        assert (k.root / CPU / "cpu{}/online".format(c)).read_text() == "{}\n".format(int(c in online))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_read_only_node_stays_read_only_and_refuses_writes(sim: Tuple[Sysfs, SimulatedKernel]) -> None:
    """chmod 444 before a run is not undone by the next write's re-rendering; writing it is EACCES, root
    included (kernfs refuses a node without a write bit), in-process and through FUSE."""
    s, k = sim
    pol = k.board.cpu_policies[0].relpath
    node = k.root / pol / "scaling_setspeed"
    node.chmod(0o444)
    s.write(pol + "/scaling_governor", "userspace")  # re-renders scaling_setspeed ("<unsupported>" -> cur)
    assert _mode(node) == 0o444 and node.read_text() != "<unsupported>\n"
    with pytest.raises(OSError) as info:
        s.write(pol + "/scaling_setspeed", k.profile.cpu_table(k.board.cpu_policies[0].name).freqs[1])
    assert info.value.errno == errno.EACCES
    assert _mode(node) == 0o444 and _mode(k.root / pol / "scaling_governor") == 0o644


def _nobody() -> Tuple[int, int]:
    # Fails rather than skips (a skipped test did not run): CI runs as root on Debian, which has 'nobody'.
    assert os.geteuid() == 0, "this test hands a tree to another user, so it needs root (CI runs as root)"
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


@pytest.fixture
def nobody_tree() -> Iterator[Tuple[SimulatedKernel, Tuple[int, int]]]:
    """A Jetson Nano tree owned by 'nobody', in a directory that user can reach (not pytest's 0700 tmp)."""
    owner = _nobody()
    top = Path(tempfile.mkdtemp(prefix="edgeexit-owner-"))
    try:
        k = make_tree(top / "t", "jetson-nano")
        chown_tree(top, owner)
        yield k, owner
    finally:
        shutil.rmtree(str(top), ignore_errors=True)


def _owners(root: Path) -> set:
    out = set()
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out.add((st.st_uid, st.st_gid))
    return out


def _as_user(owner: Tuple[int, int], work: Callable[[], int]) -> int:
    """Run ``work`` in a forked child with ``owner``'s uid/gid; its return value is the exit status."""
    status = os.waitpid(fork_as(owner, work), 0)[1]
    return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8


def test_root_writes_keep_a_users_tree_that_users(nobody_tree: Tuple[SimulatedKernel, Tuple[int, int]]) -> None:
    k, owner = nobody_tree
    cpu, gpu = k.board.cpu_policies[0].relpath, k.board.gpu.devfreq_paths[0]  # type: ignore[union-attr]
    # root writes: files re-rendered, the state file rewritten, the userspace group created
    k.write(cpu + "/scaling_governor", b"userspace\n")
    k.write(cpu + "/scaling_setspeed", b"921600\n")
    k.write(gpu + "/governor", b"userspace\n")
    k.write(gpu + "/userspace/set_freq", b"460800000\n")
    assert _owners(k.root) == {owner}

    def user_work() -> int:
        kk = SimulatedKernel(k.root)
        kk.write(gpu + "/governor", b"nvhost_podgov\n")  # removes the userspace group root made
        kk.write(cpu + "/scaling_governor", b"schedutil\n")
        os.chmod(str(k.root / cpu / "scaling_max_freq"), 0o444)
        try:
            kk.write(cpu + "/scaling_max_freq", b"921600\n")
        except OSError as err:
            return 0 if err.errno == errno.EACCES else 3
        return 4

    assert _as_user(owner, user_work) == 0
    assert not (k.root / gpu / "userspace").exists()
    assert (k.root / cpu / "scaling_governor").read_text() == "schedutil\n"
    assert _owners(k.root) == {owner}


@pytest.mark.parametrize("board", BOARDS)
def test_a_deleted_node_stays_deleted(tmp_path: Path, board: str) -> None:
    # Audit defect: every write re-rendered every node, recreating deleted ones, so a pin aimed at a
    # missing scaling_setspeed went through, and a GPU devfreq directory came back with five files.
    k = make_tree(tmp_path / "t", board)
    policy = k.board.cpu_policies[0].relpath
    (k.root / policy / "scaling_setspeed").unlink()
    if k.gpu_dir is not None:
        shutil.rmtree(str(k.root / k.gpu_dir))
    k.write(policy + "/scaling_governor", b"userspace\n")
    with pytest.raises(OSError):
        k.write(policy + "/scaling_setspeed", b"%d\n" % k.profile.cpu_table(k.board.cpu_policies[0].name).freqs[0])
    assert not (k.root / policy / "scaling_setspeed").exists()
    if k.gpu_dir is not None:
        assert not (k.root / k.gpu_dir).exists()


@pytest.mark.parametrize("board", BOARDS)
def test_measure_clock_arm_prints_the_firmwares_clock_id(tmp_path: Path, board: str) -> None:
    """`vcgencmd measure_clock arm`: frequency(<id>)=<Hz>, the Pi 5's id 0 as in the reference's sample
    `frequency(0)=2000005120` [VCG]; the real parser reads it."""
    from edgeexit.guards.honoured import parse_measure_clock_hz
    from edgeexit.sim.vcgencmd import simulated_vcgencmd

    k = make_tree(tmp_path / "t", board)
    text = simulated_vcgencmd(k.root)(["vcgencmd", "measure_clock", "arm"])
    if k.board.vendor != "raspberrypi":
        assert text.startswith("error=1")
        return
    clock_id = k.profile.cpu.vcgencmd_arm_clock_id
    assert clock_id is not None
    if board == "raspberry-pi-5":
        assert clock_id == 0
    cur = int((k.root / k.board.cpu_policies[0].relpath / "scaling_cur_freq").read_text())
    floor = int(k.profile.power_model.extra.get("real_min_cpu_khz", 0))
    assert text == "frequency({})={}\n".format(clock_id, max(cur, floor) * 1000)
    assert parse_measure_clock_hz(text) == max(cur, floor) * 1000
