"""State files and board locks across users: root restores what a udev-rule user's killed run left, but
only what that user could have done; every user's lock is seen by every other user's run; a user who is
not root leaves root's leftovers to root; several users' leftovers come back in order. CI runs as root:
the other users are forked children (tests/sim/helpers.fork_as)."""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Tuple

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
    """A uid with no passwd entry and no runtime dir: a user the tests invent."""
    for uid in range(54400, 55400):
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
    os.waitpid(pid, 0)


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
    made_roots_dir = not ROOTS_DIR.exists()
    try:
        yield root
    finally:
        key = _key(root)
        for d in [ROOTS_DIR, _dir_of(_nobody()[0])]:
            for left in d.glob(key + ".*"):
                left.unlink()
        if made_roots_dir:
            shutil.rmtree(str(ROOTS_DIR), ignore_errors=True)
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


def test_a_conflict_keeps_the_users_state_file_theirs(nobody_tree: Path, tmp_path: Path) -> None:
    """Root's restore found a conflict and kept the user's file, rewritten as root's: no longer trusted
    there, so the `edgeexit restore --force` it advised said "nothing to restore". The rewrite also
    followed a symlink the user put where its temporary file goes."""
    from edgeexit.sim.kernel import SimulatedKernel

    before = tree(nobody_tree)
    _result(_child(_nobody(), _pin(nobody_tree, "die")))
    left = _dir_of(_nobody()[0]) / "{}.state.json".format(_key(nobody_tree))
    assert left.stat().st_uid == _nobody()[0]
    gpu = [p.parent for p in (nobody_tree / "sys/devices").rglob("available_governors")][0]
    SimulatedKernel(nobody_tree).write(str((gpu / "governor").relative_to(nobody_tree)), b"performance")
    victim = tmp_path / "victim"
    victim.write_text("root's\n")

    def trap() -> str:
        os.symlink(str(victim), str(left) + ".tmp")
        return "set"

    assert _result(_child(_nobody(), trap)) == "set"
    res = cli("restore", "--board", BOARD, "--sysfs-root", str(nobody_tree))
    one_line_error(res, "changed outside edgeexit", str(left), "edgeexit restore --force")
    assert victim.read_text() == "root's\n"
    st = left.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (_nobody()[0], _nobody()[1], 0o644)
    res = cli("restore", "--force", "--board", BOARD, "--sysfs-root", str(nobody_tree))
    assert res.returncode == 0 and "restored" in res.stdout and str(left) in res.stdout, res.stdout + res.stderr
    assert diff(tree(nobody_tree), before) == [] and not left.exists()


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
