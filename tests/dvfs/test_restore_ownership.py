"""What restore puts back and what it leaves alone, on every simulated board:

- a GPU left in the userspace governor with no request comes back at the clock it ran (B1);
- someone else's userspace request (scaling_setspeed / set_freq) is theirs, like a governor or min (B2);
- a max someone else changed is left as found, with a warning, and the rest of the domain restored (B2);
- a damaged own state file is refused in one line, kept, and nothing is written from it (A2).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import pytest

from edgeexit.boards.config import load_board
from edgeexit.dvfs import open_board
from edgeexit.dvfs.session import restore_board
from edgeexit.errors import RestoreConflictError, StateFileError
from edgeexit.sim.kernel import SimulatedKernel
from tests.faults.helpers import cli, diff, one_line_error, tree
from tests.sim.helpers import BOARDS, make_tree

GPU_BOARDS = [b for b in BOARDS if load_board(b).gpu is not None]


def _w(k: SimulatedKernel, rel: str, value: object) -> None:
    k.write(rel, "{}\n".format(value).encode())


def _r(k: SimulatedKernel, rel: str) -> str:
    return (k.root / rel).read_text().strip()


def _gpu(k: SimulatedKernel) -> str:
    assert k.board.gpu is not None
    return k.board.gpu.devfreq_paths[0]


def _cpu(k: SimulatedKernel) -> str:
    return k.board.cpu_policies[0].relpath  # cpu0's: online on every board


def _idle_userspace_at(k: SimulatedKernel, where: str) -> int:
    """Leave the GPU as `echo userspace > governor` does: no request (set_freq "undefined"), running the
    clock the governor before it left; returns that clock."""
    g = _gpu(k)
    if where == "top":
        _w(k, g + "/governor", "performance")
    elif where == "mid":  # a clock no governor picks by itself: min = max = mid around a governor switch
        table = k.profile.gpu.table.freqs  # type: ignore[union-attr]
        mid = table[len(table) // 2]
        lo, hi = _r(k, g + "/min_freq"), _r(k, g + "/max_freq")
        _w(k, g + "/max_freq", mid)
        _w(k, g + "/min_freq", mid)
        _w(k, g + "/governor", "performance")
        _w(k, g + "/governor", "userspace")
        _w(k, g + "/min_freq", lo)
        _w(k, g + "/max_freq", hi)
    _w(k, g + "/governor", "userspace")
    assert _r(k, g + "/userspace/set_freq") == "undefined"
    return int(_r(k, g + "/cur_freq"))


@pytest.mark.parametrize("board", GPU_BOARDS)
@pytest.mark.parametrize("where", ["top", "mid", "floor"])
@pytest.mark.parametrize("method", ["auto", "minmax"])
def test_gpu_in_userspace_without_request_comes_back_at_its_clock(tmp_path: Path, board: str, where: str,
                                                                  method: str, runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", board)
    clock = _idle_userspace_at(k, where)
    before = tree(k.root)
    with open_board(board, sysfs_root=k.root, method=method) as s:
        s.controller.set_cpu_khz("max")
        s.controller.set_gpu_hz("max" if where == "floor" else "min")
        assert s.controller.gpu_hz() != clock
    assert int(_r(k, _gpu(k) + "/cur_freq")) == clock
    assert _r(k, _gpu(k) + "/userspace/set_freq") == "undefined"
    assert diff(tree(k.root), before) == []
    assert not list(runtime_dir.glob("*.state.json"))


@pytest.mark.parametrize("board", GPU_BOARDS)
def test_gpu_clock_that_cannot_come_back_is_said(tmp_path: Path, board: str,
                                                 capsys: pytest.CaptureFixture) -> None:
    """Someone lowered max_freq during the run: max stays theirs, so the top clock cannot come back."""
    k = make_tree(tmp_path / "t", board)
    clock = _idle_userspace_at(k, "top")
    table = k.profile.gpu.table.freqs  # type: ignore[union-attr]
    cap = max(f for f in table if f < clock)
    with open_board(board, sysfs_root=k.root) as s:
        s.controller.set_gpu_hz("min")
        _w(k, _gpu(k) + "/max_freq", cap)
    err = capsys.readouterr().err
    assert int(_r(k, _gpu(k) + "/max_freq")) == cap  # their cap is left
    assert "not the {} it showed after edgeexit's last pin".format(clock) in err and "left as found" in err
    assert "runs {} Hz, not the {} Hz it ran before".format(_r(k, _gpu(k) + "/cur_freq"), clock) in err
    assert _r(k, _gpu(k) + "/governor") == "userspace" and _r(k, _gpu(k) + "/userspace/set_freq") == "undefined"


# --- someone else's request and max ---------------------------------------------------------------------
def _their_request(k: SimulatedKernel, kind: str) -> str:
    """Another tool sets its own userspace request on a domain edgeexit pinned in userspace."""
    if kind == "cpu":
        table = k.profile.cpu_table(k.board.cpu_policies[0].name).freqs
        rel = _cpu(k) + "/scaling_setspeed"
    else:
        table = k.profile.gpu.table.freqs  # type: ignore[union-attr]
        rel = _gpu(k) + "/userspace/set_freq"
    value = table[len(table) // 2]
    _w(k, rel, value)
    return rel


KINDS = [(b, "cpu") for b in BOARDS] + [(b, "gpu") for b in GPU_BOARDS]


@pytest.mark.parametrize("board,kind", KINDS)
def test_someone_elses_userspace_request_is_left_during_a_run(tmp_path: Path, board: str, kind: str,
                                                             capsys: pytest.CaptureFixture) -> None:
    k = make_tree(tmp_path / "t", board)
    with open_board(board, sysfs_root=k.root) as s:
        s.controller.set_cpu_khz("max")
        if k.board.gpu is not None:
            s.controller.set_gpu_hz("max")
        rel = _their_request(k, kind)
        theirs = _r(k, rel)
    field = "setspeed" if kind == "cpu" else "set_freq"
    assert [c.field for c in s.restore_conflicts] == [field]
    assert _r(k, rel) == theirs  # their request stands
    assert "changed outside edgeexit ({} is".format(field) in capsys.readouterr().err


@pytest.mark.parametrize("board,kind", KINDS)
def test_someone_elses_userspace_request_after_sigkill_is_a_conflict(tmp_path: Path, board: str, kind: str,
                                                                    runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", board)
    before = tree(k.root)
    _killed_while_pinned(k, board)
    rel = _their_request(k, kind)
    theirs = _r(k, rel)
    res = cli("restore", "--board", board, "--sysfs-root", str(k.root))
    one_line_error(res, "changed outside edgeexit", "set_freq" if kind == "gpu" else "setspeed", "--force")
    assert _r(k, rel) == theirs
    assert list(runtime_dir.glob("*.state.json"))  # kept: --force restores it
    restore_board(board, k.root, force=True)
    assert diff(tree(k.root), before) == []


def _killed_while_pinned(k: SimulatedKernel, board: str) -> None:
    """A run pinned CPU and GPU and died without restoring (SIGKILL): its state file is left."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            with open_board(board, sysfs_root=k.root) as s:
                s.controller.set_cpu_khz("max")
                if k.board.gpu is not None:
                    s.controller.set_gpu_hz("max")
                code = 0
                os._exit(0)  # no unwinding, no restore: as SIGKILL leaves it
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def _max_rel(k: SimulatedKernel, kind: str) -> str:
    return _cpu(k) + "/scaling_max_freq" if kind == "cpu" else _gpu(k) + "/max_freq"


def _lower_max(k: SimulatedKernel, kind: str, boot_max: int) -> int:
    """nvpmodel (or a thermal cap, or another tool) lowers the domain's max below where edgeexit pinned it."""
    table = (k.profile.cpu_table(k.board.cpu_policies[0].name).freqs if kind == "cpu"
             else k.profile.gpu.table.freqs)  # type: ignore[union-attr]
    # above the min shown (the Orin Nano boots at nvpmodel's MIN_FREQ): a cap below it would move min too;
    # below the max the board booted with (the AGX Orin boots in MODE_30W, capped): a cap at it lowers nothing
    lo = int(_r(k, _cpu(k) + "/scaling_min_freq" if kind == "cpu" else _gpu(k) + "/min_freq"))
    between = [f for f in table if lo < f < boot_max]
    cap = between[len(between) // 3]
    _w(k, _max_rel(k, kind), cap)
    return int(_r(k, _max_rel(k, kind)))


@pytest.mark.parametrize("board,kind", KINDS)
@pytest.mark.parametrize("method", ["auto", "minmax"])
def test_a_max_someone_else_lowered_is_left_with_a_warning(tmp_path: Path, board: str, kind: str, method: str,
                                                           capsys: pytest.CaptureFixture) -> None:
    """With userspace pins, the lowered max also pulls what scaling_setspeed shows (policy->cur) down:
    that is the kernel following the cap, not someone else's request, so no conflict either. min/max
    pins go to the floor: 4.9 refuses a max below min, so lowering a higher pin would mean lowering min
    first, which is someone else's min (a conflict, tested elsewhere)."""
    k = make_tree(tmp_path / "t", board)
    boot_max = int(_r(k, _max_rel(k, kind)))
    pin = "max" if method == "auto" else "min"
    with open_board(board, sysfs_root=k.root, method=method) as s:
        s.controller.set_cpu_khz(pin)
        if k.board.gpu is not None:
            s.controller.set_gpu_hz(pin)
        cap = _lower_max(k, kind, boot_max)
    assert s.restore_conflicts == []
    assert int(_r(k, _max_rel(k, kind))) == cap  # their cap is not undone
    err = capsys.readouterr().err
    assert "its max is {}".format(cap) in err and "left as found" in err
    gov = _r(k, (_cpu(k) + "/scaling_governor") if kind == "cpu" else _gpu(k) + "/governor")
    assert gov != "userspace"  # the rest of the domain was restored (no board defaults to userspace)


@pytest.mark.parametrize("board,kind", KINDS)
def test_a_max_someone_else_lowered_after_sigkill_is_left_unless_forced(tmp_path: Path, board: str, kind: str,
                                                                        runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", board)
    before = tree(k.root)
    boot_max = int(_r(k, _max_rel(k, kind)))
    _killed_while_pinned(k, board)
    cap = _lower_max(k, kind, boot_max)
    res = cli("restore", "--board", board, "--sysfs-root", str(k.root))
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "left as found" in res.stderr
    assert int(_r(k, _max_rel(k, kind))) == cap
    assert set(diff(tree(k.root), before)) <= {_max_rel(k, kind), ".edgeexit-sim/state.json"}  # all else restored
    assert not list(runtime_dir.glob("*.state.json"))
    # `--force` keeps its meaning: the saved values go back over anyone's change, max included
    k2 = make_tree(tmp_path / "t2", board)
    before2 = tree(k2.root)
    _killed_while_pinned(k2, board)
    _lower_max(k2, kind, boot_max)
    restore_board(board, k2.root, force=True)
    assert diff(tree(k2.root), before2) == []


# --- a damaged own state file ---------------------------------------------------------------------------
def _damage(path: Path, how: str) -> None:
    if how == "nested":
        path.write_text("[" * 100000 + "]" * 100000)
        return
    data = json.loads(path.read_text())
    if how == "max-null":
        data["domains"][0]["saved"]["max"] = None
    elif how == "saved-empty":
        data["domains"][0]["saved"] = {}
    elif how == "no-domains":
        data["domains"] = []
    elif how == "max-text":
        data["domains"][-1]["saved"]["max"] = "fast"
    elif how == "in-flight-text":
        data["in_flight"] = "everything"
    path.write_text(json.dumps(data))


DAMAGE = ["max-null", "saved-empty", "no-domains", "max-text", "in-flight-text", "nested"]


@pytest.mark.parametrize("board", BOARDS)
@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_state_file_is_refused_kept_and_nothing_written(tmp_path: Path, board: str, how: str,
                                                                  runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", board)
    _killed_while_pinned(k, board)
    files = list(runtime_dir.glob("*.state.json"))
    assert len(files) == 1
    _damage(files[0], how)
    pinned = tree(k.root)
    with pytest.raises(StateFileError) as info:
        restore_board(board, k.root)
    msg = str(info.value)
    assert str(files[0]) in msg and "delete" in msg and "edgeexit status" in msg
    assert diff(tree(k.root), pinned) == []  # nothing written: no max 0, no half restore
    assert list(runtime_dir.glob("*.state.json")) == files  # the only record of the board's clocks stays


@pytest.mark.parametrize("how,names", [("max-null", "domains[0]"), ("saved-empty", "domains[0]"),
                                       ("no-domains", "no clock domain"), ("nested", "unreadable")])
def test_a_damaged_state_file_is_one_line_from_the_cli(tmp_path: Path, how: str, names: str,
                                                       runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-nano")
    _killed_while_pinned(k, "jetson-nano")
    files = list(runtime_dir.glob("*.state.json"))
    _damage(files[0], how)
    pinned = tree(k.root)
    res = cli("restore", "--board", "jetson-nano", "--sysfs-root", str(k.root))
    line = one_line_error(res, names, "edgeexit status", "delete")
    assert "restored" not in line.split(":")[0]
    assert diff(tree(k.root), pinned) == []
    assert list(runtime_dir.glob("*.state.json")) == files


def test_restore_conflict_error_is_still_raised_for_governors(tmp_path: Path, runtime_dir: Path) -> None:
    """The governor stays owned as before (regression guard for the widened OWNED_FIELDS)."""
    k = make_tree(tmp_path / "t", "jetson-nano")
    _killed_while_pinned(k, "jetson-nano")
    _w(k, _cpu(k) + "/scaling_governor", "performance")
    with pytest.raises(RestoreConflictError):
        restore_board("jetson-nano", k.root)


@pytest.mark.parametrize("board,kind", KINDS)
@pytest.mark.parametrize("method", ["auto", "minmax"])
def test_a_saved_min_above_a_lowered_max_comes_back_when_the_max_lifts(tmp_path: Path, board: str, kind: str,
                                                                      method: str, capsys: pytest.CaptureFixture) -> None:
    """The user had a high min; a cap lowered the max below it mid-run. 5.10+ keep a min request above the max
    (showing the max), so the restore writes the saved min as it was and it applies again once the cap lifts;
    4.9 refuses it (EINVAL), so there the min follows the max. The min used to be capped on every kernel, and
    a min/max pin's min stayed in force on 5.10+ once the cap lifted (the capped write matched what min showed,
    so it was skipped as a no-op)."""
    k = make_tree(tmp_path / "t", board)
    table = (k.profile.cpu_table(k.board.cpu_policies[0].name).freqs if kind == "cpu"
             else k.profile.gpu.table.freqs)  # type: ignore[union-attr]
    min_rel = _cpu(k) + "/scaling_min_freq" if kind == "cpu" else _gpu(k) + "/min_freq"
    boot_max = int(_r(k, _max_rel(k, kind)))
    high = [f for f in table if f < boot_max][-2]
    _w(k, min_rel, high)  # the user's own min, before edgeexit
    saved_min = int(_r(k, min_rel))
    cap = [f for f in table if f < saved_min][0]
    with open_board(board, sysfs_root=k.root, method=method) as s:
        s.controller.set_cpu_khz("max")
        if k.board.gpu is not None:
            s.controller.set_gpu_hz("max")
        if k.family == "4.9":  # refuses a max below min: the cap's tool moves min first
            _w(k, min_rel, cap)
        _w(k, _max_rel(k, kind), cap)
        assert int(_r(k, min_rel)) == int(_r(k, _max_rel(k, kind))) == cap
    assert s.restore_conflicts == [] and "left as found" in capsys.readouterr().err
    assert int(_r(k, min_rel)) == int(_r(k, _max_rel(k, kind))) == cap  # the cap holds; min shows it
    _w(k, _max_rel(k, kind), boot_max)  # the cap lifts
    assert int(_r(k, min_rel)) == (cap if k.family == "4.9" else saved_min)


# --- a userspace request a cap hides (scaling_setspeed shows policy->cur, not the request) --------------------
NANO_CPU = "sys/devices/system/cpu/cpufreq/policy0"


def _user_request_khz(k: SimulatedKernel) -> object:
    return k.load_state()["cpufreq"]["policy0"]["setspeed"]  # the kernel's request, which no file shows


def _userspace_at(k: SimulatedKernel, khz: int) -> None:
    _w(k, NANO_CPU + "/scaling_governor", "userspace")
    _w(k, NANO_CPU + "/scaling_setspeed", khz)


def test_restore_after_sigkill_writes_a_setspeed_a_cap_hides(tmp_path: Path, runtime_dir: Path) -> None:
    """The board at userspace 1224000; a run pins 1479000, a thermal cap lowers max to 1224000 (setspeed then
    shows 1224000, the saved value) and the run is killed. `edgeexit restore` took the node for restored and
    skipped it: the kernel's request stayed 1479000, and the CPU went there when the cap lifted."""
    k = make_tree(tmp_path / "t", "jetson-nano")
    _userspace_at(k, 1224000)
    _killed_while_pinned(k, "jetson-nano")  # the CPU at its max, 1479000
    assert _user_request_khz(k) == 1479000
    _w(k, NANO_CPU + "/scaling_max_freq", 1224000)  # the cap
    assert _r(k, NANO_CPU + "/scaling_setspeed") == "1224000"
    res = cli("restore", "--board", "jetson-nano", "--sysfs-root", str(k.root))
    assert res.returncode == 0, res.stderr
    assert _user_request_khz(k) == 1224000
    _w(k, NANO_CPU + "/scaling_max_freq", 1479000)  # the cap lifts
    assert _r(k, NANO_CPU + "/scaling_cur_freq") == "1224000"


def test_a_failed_pin_does_not_make_restore_skip_an_earlier_one(tmp_path: Path) -> None:
    """Under a cap of 1224000, a pin of 1479000 lands hidden (setspeed shows 1224000); the next pin fails (EBUSY).
    The failure wiped the record of the first write, so the restore skipped setspeed as showing the saved value."""
    from edgeexit.errors import DvfsError

    k = make_tree(tmp_path / "t", "jetson-nano")
    _w(k, NANO_CPU + "/scaling_max_freq", 1224000)
    _userspace_at(k, 1224000)
    with pytest.raises(DvfsError, match="busy"):
        with open_board("jetson-nano", sysfs_root=k.root) as s:
            s.controller.set_cpu_khz(1479000)
            k.inject_error(NANO_CPU + "/scaling_setspeed", "EBUSY")
            s.controller.set_cpu_khz(1428000)
    assert _user_request_khz(k) == 1224000
    _w(k, NANO_CPU + "/scaling_max_freq", 1479000)
    assert _r(k, NANO_CPU + "/scaling_cur_freq") == "1224000"


def test_a_pin_interrupted_by_ctrl_c_is_restored(tmp_path: Path) -> None:
    """Ctrl-C during the setspeed write is held until the write ends, then raised before the write was recorded:
    the restore took the node (showing the saved value under the cap) for one edgeexit never wrote."""
    import signal

    k = make_tree(tmp_path / "t", "jetson-nano")
    _w(k, NANO_CPU + "/scaling_max_freq", 1224000)
    _userspace_at(k, 1224000)
    with pytest.raises(KeyboardInterrupt):
        with open_board("jetson-nano", sysfs_root=k.root) as s:
            write = s.sysfs.write

            def write_then_ctrl_c(rel: str, value: str) -> None:
                write(rel, value)
                if rel.endswith("/scaling_setspeed"):
                    os.kill(os.getpid(), signal.SIGINT)

            s.sysfs.write = write_then_ctrl_c  # type: ignore[method-assign]
            s.controller.set_cpu_khz(1479000)
    assert _user_request_khz(k) == 1224000
    _w(k, NANO_CPU + "/scaling_max_freq", 1479000)
    assert _r(k, NANO_CPU + "/scaling_cur_freq") == "1224000"
