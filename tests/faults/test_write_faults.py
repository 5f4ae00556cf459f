"""Faults on the DVFS write path, in-process and through the FUSE mount: EBUSY/EACCES half way
through an ordered change (and during restore), a second process holding the board lock, an
exception inside a policy, and the tree changed behind the controller's back."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from edgeexit.dvfs import open_board
from edgeexit.dvfs.session import restore_board
from edgeexit.errors import DvfsError, RestoreConflictError
from edgeexit.sim.kernel import SimulatedKernel
from edgeexit.sim.sysfs import SimulatedSysfs
from tests.faults.helpers import check_jsonl, cli, diff, one_line_error, tree
from tests.sim.helpers import fuse_mount, make_tree

BACKENDS = ["inproc", pytest.param("fuse", marks=pytest.mark.fuse)]
NANO_CPU = "sys/devices/system/cpu/cpufreq/policy0"
NANO_GPU = "sys/devices/gpu.0/devfreq/57000000.gpu"


@contextmanager
def board_root(tmp_path: Path, backend: str, board: str = "jetson-nano") -> Iterator[Tuple[Path, SimulatedKernel]]:
    """(root the controller uses, the kernel whose backing tree is compared)."""
    k = make_tree(tmp_path / "t", board)
    if backend == "inproc":
        yield k.root, k
    else:
        with fuse_mount(k.root, board, tmp_path / "mnt") as mnt:
            yield mnt, k


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("errno_name", ["EBUSY", "EACCES"])
@pytest.mark.parametrize("method,attr", [("minmax", "scaling_max_freq"), ("auto", "scaling_setspeed")])
def test_write_fails_half_way_through_ordered_change(tmp_path: Path, backend: str, errno_name: str, method: str,
                                                     attr: str, runtime_dir: Path) -> None:
    with board_root(tmp_path, backend) as (root, k):
        before = tree(k.root)
        with pytest.raises(DvfsError) as info:
            with open_board("jetson-nano", sysfs_root=root, method=method) as s:
                s.controller.set_gpu_hz("min")
                opps = s.controller.cpu_opps_khz()
                # the second write of the CPU change fails: min (or the governor) is already written
                k.inject_error("{}/{}".format(NANO_CPU, attr), errno_name)
                s.controller.set_cpu_khz(opps[len(opps) // 2])
        assert attr in str(info.value)
        assert diff(tree(k.root), before) == []
        assert not list(runtime_dir.glob("*.state.json"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_write_fails_during_restore_keeps_state_for_edgeexit_restore(tmp_path: Path, backend: str,
                                                                    runtime_dir: Path) -> None:
    with board_root(tmp_path, backend) as (root, k):
        before = tree(k.root)
        with pytest.raises(DvfsError, match="edgeexit restore"):
            with open_board("jetson-nano", sysfs_root=root, method="minmax") as s:
                s.controller.set_gpu_hz("min")
                s.controller.set_cpu_khz(s.controller.cpu_opps_khz()[3])
                k.inject_error(NANO_CPU + "/scaling_min_freq", "EBUSY")  # restore lowers min first: it fails
        changed = diff(tree(k.root), before)
        assert changed and all(p.startswith(NANO_CPU) or p.startswith(".edgeexit-sim") for p in changed), changed
        assert list(runtime_dir.glob("*.state.json"))  # kept: the CPU policy is still pinned
        res = cli("restore", "--board", "jetson-nano", "--sysfs-root", str(root))
        assert res.returncode == 0, res.stderr
        assert diff(tree(k.root), before) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_fails_during_restore_still_restores_the_other_domains(tmp_path: Path, backend: str,
                                                                    runtime_dir: Path) -> None:
    """The restore reads each domain before writing it back; an EIO there used to escape as a bare OSError
    and leave every later domain (the GPU) pinned."""
    with board_root(tmp_path, backend) as (root, k):
        before = tree(k.root)
        with pytest.raises(DvfsError, match="edgeexit restore"):
            with open_board("jetson-nano", sysfs_root=root) as s:
                s.controller.set_cpu_khz("max")
                s.controller.set_gpu_hz("min")
                k.inject_error(NANO_CPU + "/scaling_governor", "EIO", op="read")
        changed = diff(tree(k.root), before)
        assert changed and all(p.startswith(NANO_CPU) or p.startswith(".edgeexit-sim") for p in changed), changed
        assert list(runtime_dir.glob("*.state.json"))  # kept for the CPU policy
        res = cli("restore", "--board", "jetson-nano", "--sysfs-root", str(root))
        assert res.returncode == 0, res.stderr
        assert diff(tree(k.root), before) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_restore_that_writes_nothing_keeps_the_state_file(tmp_path: Path, backend: str, runtime_dir: Path) -> None:
    """The only pinned domain cannot be read back: the restore fails before any write, and the state file must
    still be there for `edgeexit restore` (mutation found nothing that would notice it deleted first: every
    other failing restore writes a domain, and each write saves the state again)."""
    with board_root(tmp_path, backend) as (root, k):
        before = tree(k.root)
        with pytest.raises(DvfsError, match="edgeexit restore"):
            with open_board("jetson-nano", sysfs_root=root) as s:
                s.controller.set_cpu_khz("max")
                k.inject_error(NANO_CPU + "/scaling_governor", "EIO", op="read")
        assert list(runtime_dir.glob("*.state.json"))
        res = cli("restore", "--board", "jetson-nano", "--sysfs-root", str(root))
        assert res.returncode == 0, res.stderr
        assert diff(tree(k.root), before) == []


def _holder(root: Path) -> "subprocess.Popen[str]":
    code = textwrap.dedent("""
        import time
        from edgeexit.dvfs import open_board
        with open_board("jetson-nano", sysfs_root={root!r}) as s:
            s.controller.set_cpu_khz("max")
            print("pinned", flush=True)
            time.sleep(120)
    """).format(root=str(root))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, env=dict(os.environ))
    assert proc.stdout is not None and proc.stdout.readline() == "pinned\n"
    return proc


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_process_holding_the_lock(tmp_path: Path, backend: str) -> None:
    with board_root(tmp_path, backend) as (root, k):
        before = tree(k.root)
        holder = _holder(root)
        try:
            held = tree(k.root)
            res = cli("run", "--board", "jetson-nano", "--sysfs-root", str(root), "--cpu-khz", "min", "--limit", "5",
                      "--output", str(tmp_path / "out.jsonl"))
            one_line_error(res, "in use by edgeexit pid {}".format(holder.pid))
            assert diff(tree(k.root), held) == []  # the refused run wrote nothing
            res = cli("restore", "--board", "jetson-nano", "--sysfs-root", str(root))
            one_line_error(res, "in use")
        finally:
            holder.terminate()
            holder.communicate(timeout=30)
        assert diff(tree(k.root), before) == []


class _Boom(RuntimeError):
    pass


@pytest.mark.parametrize("backend", BACKENDS)
def test_exception_inside_a_policy(tmp_path: Path, backend: str) -> None:
    from edgeexit.bundle import load_bundle
    from edgeexit.policies import make_policy
    from edgeexit.records import RecordWriter
    from edgeexit.runner import run_samples
    from edgeexit.runtime import Runtime

    bundle = load_bundle()
    policy = make_policy("threshold", bundle)
    decide = policy.decide

    def failing_decide(head, state):  # type: ignore[no-untyped-def]
        if state.index == 17:
            raise _Boom("policy bug")
        return decide(head, state)

    policy.decide = failing_decide  # type: ignore[method-assign]
    out = tmp_path / "out.jsonl"
    with board_root(tmp_path, backend) as (root, k):
        before = tree(k.root)
        with pytest.raises(_Boom):
            with open_board("jetson-nano", sysfs_root=root) as s, RecordWriter(out) as writer, Runtime(bundle) as rt:
                s.controller.set_cpu_khz("max")
                s.controller.set_gpu_hz("max")
                run_samples(rt, policy, bundle.split("evaluation").take(100), writer=writer)
        assert diff(tree(k.root), before) == []
    assert len(check_jsonl(out)) == 17


def _foreign_change(root: Path) -> None:
    """Someone else (nvpmodel, another tool) switches the CPU governor while edgeexit holds the board."""
    SimulatedSysfs(root).write(NANO_CPU + "/scaling_governor", "performance")


def _expected_after_foreign_change(tmp_path: Path, original: Path) -> dict:
    copy = tmp_path / "expected"
    shutil.copytree(str(original), str(copy), symlinks=True)
    _foreign_change(copy)
    return tree(copy)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tree_changed_behind_the_controllers_back(tmp_path: Path, backend: str, runtime_dir: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    with board_root(tmp_path, backend) as (root, k):
        expected = _expected_after_foreign_change(tmp_path, k.root)
        with open_board("jetson-nano", sysfs_root=root) as s:
            s.controller.set_cpu_khz("min")
            s.controller.set_gpu_hz("max")
            _foreign_change(k.root)
        # their governor stays; edgeexit's other changes (the GPU) are undone
        assert [c.field for c in s.restore_conflicts] == ["governor"]
        assert "changed outside edgeexit" in capsys.readouterr().err
        assert diff(tree(k.root), expected) == []
        assert not list(runtime_dir.glob("*.state.json"))


def test_changed_after_sigkill_is_not_restored_blindly(tmp_path: Path, runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-nano")
    before = tree(k.root)
    expected = _expected_after_foreign_change(tmp_path, k.root)
    code = textwrap.dedent("""
        import time
        from edgeexit.dvfs import open_board
        with open_board("jetson-nano", sysfs_root={root!r}) as s:
            s.controller.set_cpu_khz("min")
            s.controller.set_gpu_hz("max")
            print("pinned", flush=True)
            time.sleep(120)
    """).format(root=str(k.root))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, universal_newlines=True)
    assert proc.stdout is not None and proc.stdout.readline() == "pinned\n"
    proc.kill()
    proc.communicate(timeout=30)
    _foreign_change(k.root)
    res = cli("restore", "--board", "jetson-nano", "--sysfs-root", str(k.root))
    # the command it names runs as printed (it said `edgeexit restore --force`, which cannot find the board)
    one_line_error(res, "changed outside edgeexit", "policy0",
                   "edgeexit restore --board jetson-nano --sysfs-root {} --force".format(k.root))
    assert diff(tree(k.root), expected) == []  # the GPU was restored, their CPU governor kept
    with pytest.raises(RestoreConflictError):  # a new run refuses to act on it
        with open_board("jetson-nano", sysfs_root=k.root):
            pass
    result = restore_board("jetson-nano", k.root, force=True)
    assert result["restored"]
    assert diff(tree(k.root), before) == []
    assert not list(runtime_dir.glob("*.state.json"))


class FullDisk:
    """The runtime directory's disk, filling up: the first ``room`` state-file writes fit, every later one
    fails with ENOSPC, as on a full tmpfs (a review filled one to just past the first state file)."""

    def __init__(self, real: object, room: int) -> None:
        self.real, self.room, self.refused = real, room, 0

    def __call__(self, path: Path, *args: object, **kwargs: object) -> None:
        if self.room <= 0:
            self.refused += 1
            raise OSError(28, os.strerror(28), str(path.with_name(path.name + ".tmp")))
        self.room -= 1
        self.real(path, *args, **kwargs)  # type: ignore[operator]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_full_runtime_dir_still_restores_the_board(tmp_path: Path, backend: str, runtime_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The run failed once the state file could not be rewritten, and its restore failed too: its first write
    marks the domain in flight in the state file, and that save was refused, so the CPU stayed pinned
    ('restoring the board failed ... policy0: No space left on device'). The restore now goes on without the
    mark, and the run's error names the runtime directory and the fix."""
    import edgeexit.dvfs.state as state

    with board_root(tmp_path, backend) as (root, k):
        before = tree(k.root)
        disk = FullDisk(state._write_state, room=1)
        monkeypatch.setattr(state, "_write_state", disk)
        warnings = []
        with pytest.raises(DvfsError) as info:
            with open_board("jetson-nano", sysfs_root=root, warn=warnings.append) as s:
                s.controller.set_cpu_khz(s.controller.cpu_opps_khz()[0])
        msg = str(info.value)
        assert "cannot save the board's state" in msg and "EDGEEXIT_RUNTIME_DIR" in msg and "\n" not in msg, msg
        assert disk.refused >= 2  # the pin's record, then the restore's mark
        assert any("restoring {} without marking it".format(NANO_CPU) in w for w in warnings), warnings
        assert diff(tree(k.root), before) == []


def _no_room() -> None:
    """In the child: no file may grow (RLIMIT_FSIZE 0), as on a full disk; EFBIG, not a SIGXFSZ kill."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def test_a_lock_that_cannot_be_written_is_one_line(tmp_path: Path, runtime_dir: Path) -> None:
    """A full runtime directory ended `run` with 'No space left on device; check the files and devices this command
    uses (--model, --input, --out, the board's sysfs)', exit 1, naming neither the lock nor the fix."""
    k = make_tree(tmp_path / "t", "jetson-nano")
    before = tree(k.root)
    proc = subprocess.run([sys.executable, "-m", "edgeexit", "run", "--board", "jetson-nano", "--sysfs-root",
                           str(k.root), "--cpu-khz", "min", "--limit", "2"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=dict(os.environ), timeout=120,
                          preexec_fn=_no_room)
    one_line_error(proc, "cannot write the board lock", str(runtime_dir), "EDGEEXIT_RUNTIME_DIR")
    assert proc.returncode == 2
    assert diff(tree(k.root), before) == []
