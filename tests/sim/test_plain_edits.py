"""A plain write into a tree that is not mounted (``echo > DIR/...``) bypasses the simulated kernel. The next
kernel on the tree replays it through the rules, as the board's kernel would have taken the write: the tree
ends as if the write had gone through the kernel, or, for a refused write or a read-only node, as if it had
not been made. Before, the kernel's state kept the old value while the file showed the new one."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List

import pytest

from edgeexit.sim.kernel import STATE, SimulatedKernel
from tests.faults.helpers import cli, tree
from tests.sim.helpers import BOARDS, make_tree, within_limits


def _plain_write(root: Path, rel: str, text: str) -> None:
    """``echo TEXT > root/rel`` by the tree's owner: the file alone changes, the kernel hears nothing."""
    path = root / rel
    mode = path.stat().st_mode & 0o7777
    os.chmod(str(path), mode | 0o200)
    path.write_text(text + "\n")
    os.chmod(str(path), mode)


def _twins(tmp_path: Path, board: str):  # type: ignore[no-untyped-def]
    """Two identical fresh trees: one to edit plainly, one to write through the kernel."""
    return make_tree(tmp_path / "plain", board), make_tree(tmp_path / "kernel", board)


def _reopen(root: Path) -> List[str]:
    lines = []  # type: List[str]
    SimulatedKernel(root, warn=lines.append)
    return lines


@pytest.mark.parametrize("board", BOARDS)
def test_plain_writes_are_replayed_as_the_kernel_would_take_them(tmp_path: Path, board: str) -> None:
    plain, kernel = _twins(tmp_path, board)
    pol = plain.board.cpu_policies[0].relpath
    freqs = within_limits(plain)
    edits = [(pol + "/scaling_governor", "userspace"), (pol + "/scaling_setspeed", str(freqs[len(freqs) // 2])),
             (pol + "/scaling_max_freq", str(freqs[-2]))]
    if plain.gpu_dir is not None and plain.profile.gpu is not None:
        edits.append((plain.gpu_dir + "/max_freq", str(plain.profile.gpu.table.freqs[1])))
    for rel, text in edits:
        _plain_write(plain.root, rel, text)
        kernel.write(rel, (text + "\n").encode())
    lines = _reopen(plain.root)
    assert len(lines) == len(edits) and all("replayed through the kernel's rules" in ln for ln in lines), lines
    assert tree(plain.root) == tree(kernel.root)
    assert _reopen(plain.root) == []  # replayed once: the files and the state agree from now on


@pytest.mark.parametrize("board", BOARDS)
def test_a_write_refused_for_its_order_is_replayed_after_the_others(tmp_path: Path, board: str) -> None:
    # Kernel 4.9 refuses a min above the requested max: raising both plainly needs the max first.
    plain, kernel = _twins(tmp_path, board)
    pol = plain.board.cpu_policies[0].relpath
    freqs = within_limits(plain)
    for k in (plain, kernel):
        k.write(pol + "/scaling_max_freq", "{}\n".format(freqs[1]).encode())
    _plain_write(plain.root, pol + "/scaling_min_freq", str(freqs[-2]))
    _plain_write(plain.root, pol + "/scaling_max_freq", str(freqs[-1]))
    kernel.write(pol + "/scaling_max_freq", "{}\n".format(freqs[-1]).encode())
    kernel.write(pol + "/scaling_min_freq", "{}\n".format(freqs[-2]).encode())
    lines = _reopen(plain.root)
    assert len(lines) == 2 and all("replayed" in ln for ln in lines), lines
    assert tree(plain.root) == tree(kernel.root)


@pytest.mark.parametrize("board", BOARDS)
def test_refused_and_read_only_edits_are_undone(tmp_path: Path, board: str) -> None:
    k = make_tree(tmp_path / "t", board)
    before = tree(k.root)
    pol = k.board.cpu_policies[0].relpath
    _plain_write(k.root, pol + "/scaling_governor", "turbo")  # no such governor: EINVAL
    _plain_write(k.root, pol + "/scaling_cur_freq", "5")  # read-only: a real write fails at open
    lines = _reopen(k.root)
    assert len(lines) == 2, lines
    assert "the kernel refused it (Invalid argument" in lines[0] and "'turbo'" in lines[0], lines
    assert "read-only" in lines[1] and "scaling_cur_freq" in lines[1], lines
    assert all("edgeexit sim mount" in ln for ln in lines)
    assert tree(k.root) == before


def test_status_shows_the_replayed_edit_and_says_so(tmp_path: Path, runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-nano")
    pol = k.board.cpu_policies[0].relpath
    freqs = within_limits(k)
    _plain_write(k.root, pol + "/scaling_max_freq", str(freqs[3]))
    res = cli("status", "--board", "jetson-nano", "--sysfs-root", str(k.root))
    assert res.returncode == 0, res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("edgeexit: warning:")]
    assert len(warnings) == 1 and "scaling_max_freq" in warnings[0], res.stderr
    assert re.search(r"policy0 .* max +{}\n".format(freqs[3]), res.stdout), res.stdout
    # the kernel's own state took it: a write through the kernel starts from the edited max
    assert int((k.root / pol / "scaling_max_freq").read_text()) == freqs[3]
    assert "replayed" not in cli("status", "--board", "jetson-nano", "--sysfs-root", str(k.root)).stderr


def test_a_replay_leaves_injected_faults_to_the_writes_they_were_injected_for(tmp_path: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-nano")
    pol = k.board.cpu_policies[0].relpath
    k.inject_error(pol + "/scaling_max_freq", "EBUSY")
    _plain_write(k.root, pol + "/scaling_max_freq", str(within_limits(k)[-2]))
    assert "replayed" in _reopen(k.root)[0]
    with pytest.raises(OSError, match="injected"):
        k.write(pol + "/scaling_max_freq", b"1479000\n")


@pytest.mark.parametrize("damage", ["fifo", "symlink"])
def test_a_damaged_node_leaves_the_tree_to_the_commands(tmp_path: Path, runtime_dir: Path, damage: str) -> None:
    """With a FIFO at one clock node, a replay's render blocked on it forever (every later command too: the
    render was left pending); a symlinked node was replaced by a file by a read-only `status`."""
    k = make_tree(tmp_path / "t", "jetson-nano")
    pol = k.board.cpu_policies[0].relpath
    edit = str(within_limits(k)[3])  # read before the node is a FIFO, which blocks a read
    node = k.root / pol / "scaling_min_freq"
    node.unlink()
    if damage == "fifo":
        os.mkfifo(str(node))
    else:
        (tmp_path / "elsewhere").write_text("5\n")
        node.symlink_to(tmp_path / "elsewhere")
    _plain_write(k.root, pol + "/scaling_max_freq", edit)
    state = (k.root / STATE).read_bytes()
    res = cli("status", "--board", "jetson-nano", "--sysfs-root", str(k.root))  # cli's timeout: a hang fails
    assert "replayed" not in res.stderr
    if damage == "fifo":
        assert res.returncode != 0 and "a FIFO or device, not a file" in res.stderr, res.stderr
    else:
        assert node.is_symlink()
    assert (k.root / STATE).read_bytes() == state  # nothing rendered, nothing left pending


def test_a_kill_before_the_replay_commits_leaves_the_edits_to_the_next_kernel(tmp_path: Path) -> None:
    from tests.faults.helpers import fork_child

    plain, kernel = _twins(tmp_path, "jetson-nano")
    pol = plain.board.cpu_policies[0].relpath
    freqs = within_limits(plain)
    for rel, text in ((pol + "/scaling_governor", "performance"), (pol + "/scaling_max_freq", str(freqs[-3]))):
        _plain_write(plain.root, rel, text)
        kernel.write(rel, (text + "\n").encode())

    def killed_at_commit() -> None:
        def die(*args: object, **kwargs: object) -> None:
            os._exit(9)
        SimulatedKernel._commit = die  # type: ignore[method-assign]
        SimulatedKernel(plain.root)

    _, status = os.waitpid(fork_child(killed_at_commit), 0)
    assert os.WEXITSTATUS(status) == 9
    assert len(_reopen(plain.root)) == 2  # the edits were still there to replay
    assert tree(plain.root) == tree(kernel.root)


@pytest.mark.parametrize("board", BOARDS)
def test_edits_of_the_boards_fixed_tables_are_undone(tmp_path: Path, board: str) -> None:
    """A review: `echo "1 2" > .../scaling_available_frequencies` was kept without a word, and `run --cpu-khz max`
    then asked for 2 kHz; `cpuinfo_max_freq` likewise. The board's tables are read-only and fixed: shown again."""
    k = make_tree(tmp_path / "t", board)
    before = tree(k.root)
    d = k.board.cpu_policies[0].relpath
    edited = [d + "/scaling_available_frequencies", d + "/cpuinfo_max_freq", d + "/related_cpus"]
    if k.gpu_dir is not None:
        edited.append(k.gpu_dir + "/available_frequencies")
    for rel in edited:
        _plain_write(k.root, rel, "1 2")
    lines = _reopen(k.root)
    assert tree(k.root) == before
    assert sorted(re.search(r": (\S+) was edited to '1 2' without the simulated kernel", l).group(1) for l in lines) == \
        sorted(edited), lines
    assert all("the node is read-only, so it shows" in l for l in lines), lines
