"""State files and board locks across users: root restores what a udev-rule user's killed run left, but
only what that user could have done; every user's lock is seen by every other user's run; a user who is
not root leaves root's leftovers to root; several users' leftovers come back in order. CI runs as root:
the other users are forked children (tests/sim/helpers.fork_as)."""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import random
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from edgeexit.dvfs.state import node_writable, state_path, user_groups
from tests.faults.helpers import cli, diff, one_line_error, tree
from tests.sim.helpers import chown_tree, fork_as, make_tree

BOARD = "jetson-nano"
POLICY0 = "sys/devices/system/cpu/cpufreq/policy0"
ROOTS_DIR = Path("/tmp/edgeexit-0")  # root's runtime dir as other users find it (/run/edgeexit is the machine's)


def _nobody() -> Tuple[int, int]:
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def _dir_of(uid: int) -> Path:
    return Path("/tmp/edgeexit-{}".format(uid))


def _free_uid() -> int:
    """A uid with no passwd entry and no runtime dir: a user the tests invent (from a random start, so
    that suites running side by side seldom take the same one)."""
    start = random.randrange(1000)
    for uid in [54400 + (start + i) % 1000 for i in range(1000)]:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            if not os.path.lexists(str(_dir_of(uid))):
                return uid
    raise AssertionError("no free uid in 54400..55399")


def _key(root: Path) -> str:
    return state_path(BOARD, root).name.split(".")[0]


def _child(owner: Tuple[int, int], work: Callable[[], str], env: Optional[Dict[str, str]] = None,
           umask: Optional[int] = None) -> Tuple[int, int]:
    """Run ``work`` as ``owner`` in a forked child with its own runtime dir (none of the test's) and
    ``env``; returns (pid, read end of a pipe that gets what ``work`` returns, or the error it raised as
    'TypeName: message')."""
    r, w = os.pipe()

    def run() -> int:
        os.close(r)
        for var in ("EDGEEXIT_RUNTIME_DIR", "XDG_RUNTIME_DIR"):
            os.environ.pop(var, None)
        os.environ.update(env or {})
        if umask is not None:
            os.umask(umask)
        try:
            out = work()
        except BaseException as err:  # noqa: BLE001 - reported to the parent
            out = "{}: {}".format(type(err).__name__, err)
        os.write(w, out.encode()[:4000])
        os.close(w)
        return 0

    pid = fork_as(owner, run)
    os.close(w)
    return pid, r


def _result(pid_fd: Tuple[int, int]) -> str:
    """What the child said; waits for it."""
    pid, r = pid_fd
    out = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return out.decode()


def _pin(root: Path, then: str, ready: Optional[int] = None, cpu: str = "max", gpu: str = "min") -> Callable[[], str]:
    """Work for a child: open the board at ``root``, pin, then die by SIGKILL (``"die"``) or say so on
    ``ready`` and wait to be killed (``"wait"``)."""

    def work() -> str:
        from edgeexit.dvfs import open_board

        session = open_board(BOARD, root)
        session.__enter__()
        session.controller.set_cpu_khz(cpu)
        session.controller.set_gpu_hz(gpu)
        if then == "wait":
            assert ready is not None
            os.write(ready, b"x")
            time.sleep(120)
        os.kill(os.getpid(), signal.SIGKILL)
        return "not killed"

    return work


def _pinned_and_waiting(owner: Tuple[int, int], root: Path, env: Optional[Dict[str, str]] = None,
                        umask: Optional[int] = None) -> int:
    """Fork ``owner``'s run that pins the board and waits; returns its pid once it has pinned."""
    r, w = os.pipe()
    pid, fd = _child(owner, _pin(root, "wait", w), env, umask)
    os.close(fd)
    os.close(w)
    assert os.read(r, 1) == b"x", "the holder's run did not pin the board"
    os.close(r)
    return pid


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # a grandchild (see _hold_lock): its parent is gone, init reaps it
        pass


def _open_as(owner: Tuple[int, int], root: Path, env: Optional[Dict[str, str]] = None) -> str:
    """What ``owner``'s run on the board at ``root`` says: 'pinned', or its error."""
    def work() -> str:
        from edgeexit.dvfs import open_board

        with open_board(BOARD, root) as session:
            session.controller.set_cpu_khz("min")
        return "pinned"

    return _result(_child(owner, work, env))


def _root_run_killed(root: Path) -> None:
    """A root run (runtime dir /tmp/edgeexit-0) pins the board and is SIGKILLed."""
    pid, fd = _child((0, 0), _pin(root, "die", cpu="min", gpu="max"), {"EDGEEXIT_RUNTIME_DIR": str(ROOTS_DIR)})
    _result((pid, fd))


@contextlib.contextmanager
def _tree_owned_by(owner: Tuple[int, int]) -> Iterator[Path]:
    """A Jetson Nano tree owned by ``owner``; the state files and locks the test leaves for it (in root's
    and nobody's runtime dirs) are removed after."""
    assert os.geteuid() == 0, "this test runs board sessions as other users, so it needs root (CI runs as root)"
    top = Path(tempfile.mkdtemp(prefix="edgeexit-xuser-"))
    os.chmod(str(top), 0o755)
    root = top / "t"
    make_tree(root, BOARD)
    chown_tree(top, owner)
    made = [d for d in (ROOTS_DIR, _dir_of(_nobody()[0])) if not d.exists()]
    try:
        yield root
    finally:
        key = _key(root)
        for d in [ROOTS_DIR, _dir_of(_nobody()[0])]:
            for left in d.glob(key + ".*"):
                left.unlink()
        for d in made:  # the runtime dirs the test's sessions made: nothing of theirs is left on the machine
            shutil.rmtree(str(d), ignore_errors=True)
        shutil.rmtree(str(top), ignore_errors=True)


@pytest.fixture
def nobody_tree() -> Iterator[Path]:
    """A Jetson Nano tree owned by 'nobody', as the udev rule leaves the clock nodes to a user."""
    with _tree_owned_by(_nobody()) as root:
        yield root


@pytest.fixture
def root_tree() -> Iterator[Path]:
    """A Jetson Nano tree owned by root, as a board's nodes are without the udev rule."""
    with _tree_owned_by((0, 0)) as root:
        yield root


@pytest.fixture
def invented_uid() -> Iterator[int]:
    uid = _free_uid()
    try:
        yield uid
    finally:
        shutil.rmtree(str(_dir_of(uid)), ignore_errors=True)


# --- whose state root trusts --------------------------------------------------------------------------
def test_a_state_file_from_a_user_who_cannot_write_the_nodes_is_ignored(root_tree: Path) -> None:
    """Anyone can create /tmp/edgeexit-<their uid>; root's restore used to write whatever clocks a file
    there named. 'nobody' cannot write this tree's nodes, so its file is ignored, with one warning."""
    before = tree(root_tree)
    avail = (root_tree / POLICY0 / "scaling_available_frequencies").read_text().split()
    planted = _dir_of(_nobody()[0]) / "{}.state.json".format(_key(root_tree))
    data = {"format": 1, "board": BOARD, "root": os.path.realpath(str(root_tree)), "pid": 1, "simulated": True,
            "saved_at": time.time(), "expected": {}, "in_flight": [],
            "domains": [{"kind": "cpu", "name": "policy0", "path": POLICY0,
                         "saved": {"governor": "userspace", "min": avail[0], "max": avail[0], "setspeed": avail[0]}}]}

    def plant() -> str:
        planted.parent.mkdir(mode=0o755, exist_ok=True)
        planted.write_text(json.dumps(data))
        return "planted"

    assert _result(_child(_nobody(), plant)) == "planted"
    for cmd in (("restore",), ("restore", "--force")):
        res = cli(*cmd, "--board", BOARD, "--sysfs-root", str(root_tree))
        assert res.returncode == 0 and "nothing to restore" in res.stdout, res.stdout + res.stderr
        warnings = res.stderr.strip().splitlines()
        assert len(warnings) == 1 and "ignoring the state file {}".format(planted) in warnings[0], res.stderr
        assert "cannot write" in warnings[0] and "Traceback" not in res.stderr
        assert diff(tree(root_tree), before) == []
    assert planted.exists()  # not ours to delete either


def test_a_run_through_group_write_access_is_restored(root_tree: Path) -> None:
    """The udev rule's way: root owns the nodes, the user's group may write them. Root's restore trusts
    that user's state file (the user could write every node it names) and puts the board back."""
    nogroup = _nobody()[1]
    for dirpath, dirnames, filenames in os.walk(str(root_tree.parent)):
        for name in [dirpath] + [os.path.join(dirpath, n) for n in dirnames + filenames]:
            if not os.path.islink(name):
                os.chown(name, 0, nogroup)
                mode = stat.S_IMODE(os.stat(name).st_mode)
                os.chmod(name, mode | (mode & 0o700) >> 3)  # the group may do what the owner may
    before = tree(root_tree)
    _result(_child(_nobody(), _pin(root_tree, "die")))
    left = _dir_of(_nobody()[0]) / "{}.state.json".format(_key(root_tree))
    assert left.exists() and diff(tree(root_tree), before) != []
    res = cli("restore", "--board", BOARD, "--sysfs-root", str(root_tree))
    assert res.returncode == 0 and "restored" in res.stdout and str(left) in res.stdout, res.stdout + res.stderr
    assert diff(tree(root_tree), before) == [] and not left.exists()


def test_write_permission_follows_owner_group_and_supplementary_groups(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Who could have written a node: its owner by u+w, a member of its group (primary or supplementary,
    from the passwd and group databases) by g+w, anyone else by o+w, and root always."""
    import edgeexit.dvfs.state as state

    node = tmp_path / "scaling_max_freq"
    node.write_text("1479000\n")
    gid = node.stat().st_gid
    uid = 54399  # no such user: the databases below say who it is

    class Pw:
        pw_name, pw_gid = "someone", 54399

    real = pwd.getpwuid
    monkeypatch.setattr(state.pwd, "getpwuid", lambda u: Pw() if u == uid else real(u))
    member = {"in": [54399, gid], "out": [54399]}
    for case, groups_of in member.items():
        monkeypatch.setattr(state.os, "getgrouplist", lambda name, g, _l=groups_of: list(_l))
        groups = user_groups(uid)
        for mode, writable in ((0o664, case == "in"), (0o644, False), (0o646, case == "out")):
            os.chmod(str(node), mode)
            assert node_writable(uid, groups, node) is writable, (case, oct(mode))
    assert node_writable(0, set(), node)
    assert not node_writable(uid, {gid}, tmp_path / "missing")
    assert user_groups(54398) == set()  # no passwd entry: no group can be known


# --- locks every user's run sees ------------------------------------------------------------------------
@pytest.mark.parametrize("left", ["fresh", "left 0700"])
def test_runtime_dir_and_lock_are_readable_by_all_whatever_the_umask(left: str, invented_uid: int) -> None:
    """A run under umask 077 (or a runtime dir an older version left 0700) hid its lock from other users,
    whose runs then pinned the board under it. The runtime dir is 0755, the lock and state 0644."""
    holder = (invented_uid, invented_uid)
    with _tree_owned_by(holder) as owned:
        if left != "fresh":
            _dir_of(invented_uid).mkdir(mode=0o700)
            os.chown(str(_dir_of(invented_uid)), *holder)
        pid = _pinned_and_waiting(holder, owned, umask=0o077)
        try:
            d = _dir_of(invented_uid)
            key = _key(owned)
            assert stat.S_IMODE(d.stat().st_mode) == 0o755
            assert stat.S_IMODE((d / (key + ".lock")).stat().st_mode) == 0o644
            assert stat.S_IMODE((d / (key + ".state.json")).stat().st_mode) == 0o644
            said = _open_as(_nobody(), owned)
            assert said.startswith("BoardBusyError: ") and "in use by another user's edgeexit run" in said, said
            assert str(d / (key + ".lock")) in said
        finally:
            _kill(pid)


def test_an_unreadable_lock_counts_as_held(invented_uid: int) -> None:
    """A lock that cannot be opened (another user's 0700 directory) used to count as free."""
    holder = (invented_uid, invented_uid)
    with _tree_owned_by(holder) as owned:
        pid = _pinned_and_waiting(holder, owned)
        try:
            d = _dir_of(invented_uid)
            os.chmod(str(d), 0o700)  # as an older version left it
            said = _open_as(_nobody(), owned)
            assert said.startswith("BoardBusyError: ") and "\n" not in said, said
            lock = d / (_key(owned) + ".lock")
            assert "{} cannot be read (Permission denied)".format(lock) in said and "chmod -R a+rX {}".format(d) in said
        finally:
            _kill(pid)


def test_a_run_with_xdg_runtime_dir_keeps_its_lock_where_others_see_it(nobody_tree: Path) -> None:
    """$XDG_RUNTIME_DIR is 0700 by design (pam_systemd): a lock there is invisible to other users, whose
    runs pinned the board under it. A user's runtime dir is /tmp/edgeexit-<uid> whatever XDG_RUNTIME_DIR says."""
    xdg = Path(tempfile.mkdtemp(prefix="edgeexit-xdg-"))
    os.chown(str(xdg), *_nobody())
    try:
        pid = _pinned_and_waiting(_nobody(), nobody_tree, env={"XDG_RUNTIME_DIR": str(xdg)})
        try:
            assert (_dir_of(_nobody()[0]) / (_key(nobody_tree) + ".lock")).exists()
            assert not (xdg / "edgeexit").exists()
            pinned = tree(nobody_tree)
            res = cli("run", "--cpu-khz", "102000", "--limit", "1", "--board", BOARD, "--sysfs-root", str(nobody_tree))
            one_line_error(res, "in use by another user's edgeexit run", "pid {}".format(pid))
            assert tree(nobody_tree) == pinned
        finally:
            _kill(pid)
    finally:
        shutil.rmtree(str(xdg), ignore_errors=True)


def test_a_runtime_dir_someone_else_made_is_refused(invented_uid: int) -> None:
    """Anyone can create /tmp/edgeexit-<your uid> first, and would then control your locks and state."""
    user = (invented_uid, invented_uid)
    with _tree_owned_by(user) as owned:
        before = tree(owned)
        d = _dir_of(invented_uid)
        d.mkdir()
        os.chmod(str(d), 0o777)
        said = _open_as(user, owned)
        assert said.startswith("StateFileError: runtime directory {} is not a directory owned by you".format(d)), said
        assert "\n" not in said and "rm -r {}".format(d) in said
        assert tree(owned) == before


# --- leftovers of several users ------------------------------------------------------------------------
def test_a_user_leaves_roots_leftover_state_to_root(nobody_tree: Path) -> None:
    """A udev-rule user's restore (or run) used to put back root's killed run, then fail on deleting root's
    file with a bare 'Permission denied', at every run. It now stops, in one line, naming `sudo edgeexit
    restore`, and root's restore does the job."""
    before = tree(nobody_tree)
    _root_run_killed(nobody_tree)
    left = ROOTS_DIR / "{}.state.json".format(_key(nobody_tree))
    pinned = tree(nobody_tree)
    assert left.exists() and diff(pinned, before) != []

    def restore() -> str:
        from edgeexit.dvfs.session import restore_board

        return repr(restore_board(BOARD, nobody_tree))

    for said in (_result(_child(_nobody(), restore)), _open_as(_nobody(), nobody_tree)):
        assert said.startswith("StateFileError: root left the saved state") and "\n" not in said, said
        assert str(left) in said
        assert "sudo edgeexit restore --board {} --sysfs-root {}".format(BOARD, nobody_tree) in said
        assert tree(nobody_tree) == pinned and left.exists()
    res = cli("restore", "--board", BOARD, "--sysfs-root", str(nobody_tree))
    assert res.returncode == 0 and str(left) in res.stdout, res.stdout + res.stderr
    assert diff(tree(nobody_tree), before) == [] and not left.exists()


def test_a_conflict_in_a_users_state_file_is_kept_in_roots_own_runtime_dir(nobody_tree: Path) -> None:
    """Root's restore found a conflict in a user's file and wrote what is left back into that user's
    directory, which the user controls (see the swap tests below). What is left is now kept in root's
    own runtime dir under the same name, the user's file is deleted, and the message names root's file;
    the `edgeexit restore --force` it advises puts the saved values back from there."""
    from edgeexit.paths import runtime_dir
    from edgeexit.sim.kernel import SimulatedKernel

    before = tree(nobody_tree)
    _result(_child(_nobody(), _pin(nobody_tree, "die")))
    left = _dir_of(_nobody()[0]) / "{}.state.json".format(_key(nobody_tree))
    assert left.stat().st_uid == _nobody()[0]
    gpu = [p.parent for p in (nobody_tree / "sys/devices").rglob("available_governors")][0]
    SimulatedKernel(nobody_tree).write(str((gpu / "governor").relative_to(nobody_tree)), b"performance")
    kept = runtime_dir() / left.name
    res = cli("restore", "--board", BOARD, "--sysfs-root", str(nobody_tree))
    said = one_line_error(res, "changed outside edgeexit", "delete {}".format(kept),
                          "edgeexit restore --board {} --sysfs-root {} --force".format(BOARD, nobody_tree))
    assert str(left) not in said
    assert not left.exists() and not os.path.lexists(str(left) + ".tmp")
    st = kept.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644)
    assert [e["path"] for e in json.loads(kept.read_text())["domains"]] == [str(gpu.relative_to(nobody_tree))]
    res = cli("restore", "--force", "--board", BOARD, "--sysfs-root", str(nobody_tree))
    assert res.returncode == 0 and "restored" in res.stdout and str(kept) in res.stdout, res.stdout + res.stderr
    assert diff(tree(nobody_tree), before) == [] and not kept.exists()


def test_a_conflict_above_roots_own_waiting_file_leaves_the_users_file_as_it_was(nobody_tree: Path) -> None:
    """What is left of a conflicted foreign file goes to root's own state file, but root's own older one
    still waits below it: that one is not overwritten, and the user's file is left as it was (nothing is
    written into the user's directory); `restore --force` then undoes both, the newest first."""
    from edgeexit.dvfs.state import write_state
    from edgeexit.paths import runtime_dir
    from edgeexit.sim.kernel import SimulatedKernel
    from edgeexit.sim.sysfs import SimulatedSysfs
    from edgeexit.dvfs.controller import DvfsController
    from edgeexit.boards.config import load_board

    before = tree(nobody_tree)
    snap = DvfsController(load_board(BOARD), SimulatedSysfs(nobody_tree), None).snapshot()
    own = runtime_dir() / "{}.state.json".format(_key(nobody_tree))
    write_state(own, BOARD, nobody_tree, True, snap, {"expected": {}, "in_flight": []})
    data = json.loads(own.read_text())
    data["saved_at"] = time.time() - 60
    own.write_text(json.dumps(data))
    _result(_child(_nobody(), _pin(nobody_tree, "die")))
    left = _dir_of(_nobody()[0]) / own.name
    text = left.read_text()
    gpu = [p.parent for p in (nobody_tree / "sys/devices").rglob("available_governors")][0]
    SimulatedKernel(nobody_tree).write(str((gpu / "governor").relative_to(nobody_tree)), b"performance")
    res = cli("restore", "--board", BOARD, "--sysfs-root", str(nobody_tree))
    one_line_error(res, "changed outside edgeexit", "delete {}".format(left), "1 older saved state file")
    assert left.read_text() == text and left.stat().st_uid == _nobody()[0]
    assert json.loads(own.read_text())["saved_at"] == data["saved_at"]
    res = cli("restore", "--force", "--board", BOARD, "--sysfs-root", str(nobody_tree))
    assert res.returncode == 0 and res.stdout.index(str(left)) < res.stdout.index(str(own)), res.stdout + res.stderr
    assert diff(tree(nobody_tree), before) == [] and not left.exists() and not own.exists()


def test_every_users_leftovers_are_restored_newest_first(nobody_tree: Path, tmp_path: Path) -> None:
    """'nobody's run was killed; a root run then started on its pinned clocks (saving them as the board's)
    and was killed too. Root's restore used to put back only one of the two. Both now come back, the
    newest first, so the board ends as it was before either run."""
    before = tree(nobody_tree)
    _result(_child(_nobody(), _pin(nobody_tree, "die")))
    theirs = _dir_of(_nobody()[0]) / "{}.state.json".format(_key(nobody_tree))
    aside = tmp_path / "aside.json"
    shutil.move(str(theirs), str(aside))  # out of sight of root's run, which would restore it first
    time.sleep(0.05)
    _root_run_killed(nobody_tree)
    shutil.move(str(aside), str(theirs))
    roots = ROOTS_DIR / "{}.state.json".format(_key(nobody_tree))
    assert theirs.stat().st_uid == _nobody()[0] and roots.exists()
    res = cli("restore", "--board", BOARD, "--sysfs-root", str(nobody_tree))
    assert res.returncode == 0, res.stdout + res.stderr
    said = res.stdout.strip()
    assert said.index(str(roots)) < said.index(str(theirs)), said
    assert diff(tree(nobody_tree), before) == [] and not roots.exists() and not theirs.exists()


# --- what a planted state file can make root do -------------------------------------------------------
def _plant(owner: Tuple[int, int], root: Path, text: str) -> Path:
    """``owner`` puts ``text`` where its killed run's state file for the board at ``root`` would be."""
    planted = _dir_of(owner[0]) / "{}.state.json".format(_key(root))

    def plant() -> str:
        planted.parent.mkdir(mode=0o755, exist_ok=True)
        planted.write_text(text)
        return "planted"

    assert _result(_child(owner, plant)) == "planted"
    return planted


def _state_text(root: Path, saved: Dict[str, object], **top: object) -> str:
    """A state file naming policy0 with ``saved`` over its current values (``top`` over the file's fields)."""
    from edgeexit.dvfs.domains import CpufreqPolicy
    from edgeexit.sim.sysfs import SimulatedSysfs

    now = CpufreqPolicy(SimulatedSysfs(root), POLICY0, "policy0").save()  # type: Dict[str, object]
    now.update(saved)
    data = {"format": 1, "board": BOARD, "root": os.path.realpath(str(root)), "pid": 1, "simulated": True,
            "saved_at": time.time(), "expected": {}, "in_flight": [],
            "domains": [{"kind": "cpu", "name": "policy0", "path": POLICY0, "saved": now}]}  # type: Dict[str, object]
    data.update(top)
    return json.dumps(data)


_HUGE = "1" + "0" * 400  # a JSON number no float holds
_CRASHES = {
    # each crashed root's `edgeexit restore` and `edgeexit run` with a bare traceback
    "infinite min": lambda root: _state_text(root, {"min": "@"}).replace('"@"', "1e999"),
    "deep JSON": lambda root: "[" * 200000,
    "huge saved_at": lambda root: _state_text(root, {}, saved_at="@").replace('"@"', _HUGE),
}


@pytest.mark.parametrize("can_write", [False, True], ids=["owner cannot write the nodes", "owner can write them"])
@pytest.mark.parametrize("payload", sorted(_CRASHES))
def test_a_state_file_that_cannot_be_parsed_or_checked_is_ignored(payload: str, can_write: bool,
                                                                  invented_uid: int) -> None:
    """Any local user could crash every root run and restore with a bare traceback (OverflowError,
    RecursionError) by planting a state file in their own /tmp/edgeexit-<uid>. Whatever fails while a
    foreign file is read or checked, it is now ignored with one warning line (a time no float holds
    only sorts it last: from a user who can write the nodes, the file is plain otherwise)."""
    user = (invented_uid, invented_uid)
    restored = payload == "huge saved_at" and can_write
    with _tree_owned_by(user if can_write else (0, 0)) as owned:
        before = tree(owned)
        planted = _plant(user, owned, _CRASHES[payload](owned))
        for cmd in (("restore",), ("run", "--cpu-khz", "102000", "--limit", "1")):
            res = cli(*cmd, "--board", BOARD, "--sysfs-root", str(owned))
            assert res.returncode == 0 and "Traceback" not in res.stderr, res.stdout + res.stderr
            warnings = [l for l in res.stderr.splitlines() if "ignoring the state file" in l]
            if restored:
                assert not warnings and (cmd != ("restore",) or str(planted) in res.stdout), res.stdout + res.stderr
            else:
                assert len(warnings) == 1 and str(planted) in warnings[0] and len(warnings[0]) < 500, res.stderr
            assert diff(tree(owned), before) == []
        assert planted.exists() is not restored


@pytest.mark.parametrize("saved", [{"min": "-1"}, {"max": 1479000.5}, {"min": " 102000"}, {"governor": "turbo"},
                                   {"governor": ["userspace"]}, {"setspeed": "0x10"}, {"bogus": "1"}],
                         ids=lambda s: "{}={!r}".format(*list(s.items())[0]))
def test_saved_values_of_a_foreign_file_must_be_plain(saved: Dict[str, object], nobody_tree: Path) -> None:
    """Root wrote whatever a user's file held (str() of a list, a float, a negative number, a governor the
    kernel does not offer): the restore then failed at every run, or wrote values no run saved. A foreign
    file's saved values must be unsigned decimal integers and a governor the domain offers."""
    before = tree(nobody_tree)
    planted = _plant(_nobody(), nobody_tree, _state_text(nobody_tree, saved))
    res = cli("restore", "--board", BOARD, "--sysfs-root", str(nobody_tree))
    assert res.returncode == 0 and "nothing to restore" in res.stdout, res.stdout + res.stderr
    warnings = res.stderr.strip().splitlines()
    assert len(warnings) == 1 and "ignoring the state file {}".format(planted) in warnings[0], res.stderr
    assert "saved" in warnings[0] and diff(tree(nobody_tree), before) == []


def test_any_failure_checking_a_foreign_file_only_ignores_it(nobody_tree: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    """Whatever checking another user's file raises (here a RecursionError from the value checks), the
    file is ignored with one warning line: the checks only let through exceptions nobody foresaw."""
    import edgeexit.dvfs.session as session

    before = tree(nobody_tree)
    planted = _plant(_nobody(), nobody_tree, _state_text(nobody_tree, {}))

    def boom(*args: object) -> str:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(session, "_plain_saved", boom)
    res = session.restore_board(BOARD, nobody_tree)
    assert not res["restored"] and planted.exists() and diff(tree(nobody_tree), before) == []
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and "ignoring the state file {}: it cannot be checked (maximum recursion".format(
        planted) in warnings[0], warnings


def _swap_during_restore(monkeypatch: pytest.MonkeyPatch, uid: int, to: Path) -> None:
    """While root restores, the user swaps their runtime dir for a symlink to ``to`` (they own it, so they
    can at any time): done here right after the domains are written back."""
    from edgeexit.dvfs import controller

    orig = controller.DvfsController.restore_checked
    d = _dir_of(uid)

    def swap() -> str:
        os.rename(str(d), str(d) + ".moved")
        os.symlink(str(to), str(d))
        return "swapped"

    def hooked(self: object, *args: object, **kwargs: object) -> object:
        report = orig(self, *args, **kwargs)  # type: ignore[arg-type]
        if not os.path.islink(str(d)):
            assert _result(_child((uid, uid), swap)) == "swapped"
        return report

    monkeypatch.setattr(controller.DvfsController, "restore_checked", hooked)


@contextlib.contextmanager
def _victim_dir(uid: int) -> Iterator[Path]:
    """A root-only directory, and the user's swapped runtime dir removed after."""
    victim = Path(tempfile.mkdtemp(prefix="edgeexit-victim-"))
    os.chmod(str(victim), 0o700)
    try:
        yield victim
    finally:
        d = _dir_of(uid)
        if os.path.islink(str(d)):
            os.unlink(str(d))
        shutil.rmtree(str(d) + ".moved", ignore_errors=True)
        shutil.rmtree(str(victim), ignore_errors=True)


def test_a_conflict_write_back_cannot_be_redirected_by_the_user(invented_uid: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Root kept a conflicted foreign file by writing it back into the user's directory by path: the user
    swapped the directory for a symlink meanwhile, and root created a user-owned file in a root-only
    directory. Root now writes what is left into its own runtime dir only."""
    from edgeexit.dvfs.session import restore_board
    from edgeexit.errors import RestoreConflictError
    from edgeexit.paths import runtime_dir
    from edgeexit.sim.kernel import SimulatedKernel

    user = (invented_uid, invented_uid)
    with _tree_owned_by(user) as owned, _victim_dir(invented_uid) as victim:
        _result(_child(user, _pin(owned, "die")))
        left = _dir_of(invented_uid) / "{}.state.json".format(_key(owned))
        assert left.stat().st_uid == invented_uid
        SimulatedKernel(owned).write(POLICY0 + "/scaling_governor", b"performance")  # someone else's change
        _swap_during_restore(monkeypatch, invented_uid, victim)
        with pytest.raises(RestoreConflictError) as err:
            restore_board(BOARD, owned)
        assert os.listdir(str(victim)) == []
        kept = runtime_dir() / left.name
        assert "delete {}".format(kept) in str(err.value) and "\n" not in str(err.value)
        assert kept.stat().st_uid == 0 and [e["path"] for e in json.loads(kept.read_text())["domains"]] == [POLICY0]


def test_deleting_a_restored_foreign_file_cannot_be_redirected_by_the_user(invented_uid: int,
                                                                          monkeypatch: pytest.MonkeyPatch,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """Root deleted a restored foreign file by path: the user swapped the directory for a symlink and root
    deleted <any directory>/<name>.state.json. Root now deletes it only through the directory it opened
    without following a symlink, and says in one line when it cannot."""
    from edgeexit.dvfs.session import restore_board

    user = (invented_uid, invented_uid)
    with _tree_owned_by(user) as owned, _victim_dir(invented_uid) as victim:
        before = tree(owned)
        _result(_child(user, _pin(owned, "die")))
        left = _dir_of(invented_uid) / "{}.state.json".format(_key(owned))
        roots = victim / left.name
        roots.write_text("root's\n")
        _swap_during_restore(monkeypatch, invented_uid, victim)
        res = restore_board(BOARD, owned)
        assert res["restored"] and diff(tree(owned), before) == []
        assert roots.read_text() == "root's\n"
        warnings = capsys.readouterr().err.strip().splitlines()
        assert len(warnings) == 1 and str(left) in warnings[0] and "could not delete it" in warnings[0], warnings


# --- locks whose holders get node access from outside /etc/group ---------------------------------------
def _free_gid() -> int:
    import grp

    for gid in range(54400, 55400):
        try:
            grp.getgrgid(gid)
        except KeyError:
            return gid
    raise AssertionError("no free gid in 54400..55399")


def _hold_lock(uid: int, groups: List[int], root: Path, pid_text: Optional[str] = None,
               hand_over: bool = False, setuid_root: bool = False) -> int:
    """Fork a process of ``uid`` holding exactly the supplementary ``groups`` (as systemd's
    SupplementaryGroups= gives them, whatever /etc/group says) that takes the board lock at ``root``;
    ``pid_text`` replaces the pid it writes there, ``hand_over`` has it fork a child that keeps the lock
    and exit, ``setuid_root`` has it then take effective uid 0, as a setuid-root program it execs would
    (`su` waiting at its prompt). Returns the pid to kill, once the lock is held."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.setgroups(groups)
            os.setgid(uid)
            os.setresuid(uid, uid, 0 if setuid_root else uid)
            os.environ.pop("EDGEEXIT_RUNTIME_DIR", None)
            from edgeexit.dvfs.state import BoardLock

            lock = BoardLock(BOARD, root)
            lock.acquire()
            if setuid_root:
                os.setresuid(-1, 0, -1)
            if pid_text is not None:
                lock.path.write_text(pid_text)
            if hand_over:
                if os.fork() != 0:
                    os._exit(0)  # the lock stays with the child; its taker, named in /proc/locks, is gone
                time.sleep(0.2)
            os.write(w, str(os.getpid()).encode())
            os.close(w)
            time.sleep(120)
        finally:
            os._exit(0)
    os.close(w)
    said = os.read(r, 64)
    os.close(r)
    if hand_over:
        os.waitpid(pid, 0)
    assert said, "the lock holder failed"
    return int(said)


def _group_writable_tree(gid: int) -> "contextlib.AbstractContextManager[Path]":
    """A root-owned tree whose clock nodes group ``gid`` may write (what the udev rule does)."""
    @contextlib.contextmanager
    def make() -> Iterator[Path]:
        with _tree_owned_by((0, 0)) as owned:
            for node in owned.rglob("*"):
                if node.name in ("scaling_governor", "scaling_min_freq", "scaling_max_freq", "scaling_setspeed",
                                 "governor", "min_freq", "max_freq", "set_freq") and node.is_file():
                    os.chown(str(node), 0, gid)
                    os.chmod(str(node), 0o664)
            yield owned

    return make()


def test_a_lock_held_through_a_group_etc_group_does_not_list_keeps_root_off(invented_uid: int) -> None:
    """The holder's access came from a group only its process holds (SupplementaryGroups=, no passwd
    entry): judged from /etc/group it could not pin the board, so root skipped its lock and pinned too.
    A held lock is now judged by its holder process's own credentials (/proc/<pid>/status)."""
    from edgeexit.dvfs import open_board
    from edgeexit.errors import BoardBusyError

    gid = _free_gid()
    with _group_writable_tree(gid) as owned:
        pinned = tree(owned)
        pid = _hold_lock(invented_uid, [gid], owned)
        try:
            with pytest.raises(BoardBusyError) as err:
                with open_board(BOARD, owned) as session:
                    session.controller.set_cpu_khz("max")
            assert "in use by another user's edgeexit run" in str(err.value) and "pid {}".format(pid) in str(err.value)
            assert tree(owned) == pinned
        finally:
            _kill(pid)


@pytest.mark.parametrize("how", ["a forged pid", "handed to a child", "then a setuid-root program"])
def test_a_lock_whose_holder_cannot_write_the_nodes_still_does_not_block_root(how: str, invented_uid: int) -> None:
    """The other side: anyone can hold a lock in their own /tmp/edgeexit-<uid>. A holder whose process
    cannot write any clock node must not keep root off the board, whatever pid it writes into its lock
    (root's, or none that runs), if the process that took it is gone (it forked and exited), or if it then
    runs a setuid-root program (judged by its real uid, the user's own)."""
    from edgeexit.dvfs import open_board

    gid = _free_gid()
    with _group_writable_tree(gid) as owned:
        pid = _hold_lock(invented_uid, [], owned, pid_text="1\n" if how == "a forged pid" else None,
                         hand_over=how == "handed to a child", setuid_root=how.endswith("setuid-root program"))
        try:
            with open_board(BOARD, owned) as session:
                session.controller.set_cpu_khz("max")
        finally:
            _kill(pid)
