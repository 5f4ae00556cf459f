"""Ctrl-C and SIGTERM (edgeexit/signals.py): held while the board is written, and never lost where Python
cannot raise them (a finalizer, interpreter teardown)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgeexit.errors import DvfsError
from edgeexit.signals import signals_held
from tests.faults.helpers import diff, tree
from tests.sim.helpers import make_tree, snapshot


def test_a_held_ctrl_c_is_delivered_when_the_block_ends() -> None:
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("end of block")
    assert reached == ["end of block"]  # the write finished before the interrupt


def test_a_failed_block_keeps_its_error() -> None:
    # Audit defect: the held Ctrl-C's KeyboardInterrupt replaced a failed restore's DvfsError, and the CLI
    # then said "interrupted; the board state was restored".
    with pytest.raises(DvfsError, match="cannot write"):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            raise DvfsError("cannot write policy0; run `edgeexit restore`")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers put back


# --- signals that land where Python cannot raise them (review: 452 trials near commands' ends) ----------


def _cli_child(code: str, *argv: str) -> "subprocess.CompletedProcess[str]":
    """The console script in a child whose set-up is ``code`` (patches that place a signal exactly)."""
    script = textwrap.dedent(code) + "\nimport sys\nsys.argv = ['edgeexit'] + sys.argv[1:]\n" \
                                     "from edgeexit.console import main\nmain()\n"
    return subprocess.run([sys.executable, "-c", script] + list(argv), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120)


SIGNAL_IN_A_FINALIZER = """
    import os, signal, weakref
    import edgeexit.runtime as runtime
    calls = []
    infer = runtime.Runtime.infer

    class Doomed:
        pass

    def signal_me():
        os.kill(os.getpid(), signal.{sig})
        for _ in range(10000):  # the handler runs here, inside the callback, where its exception is lost
            pass

    def counting(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            d = Doomed()
            weakref.finalize(d, signal_me)
            del d
        return infer(self, *args, **kwargs)

    runtime.Runtime.infer = counting
"""


@pytest.mark.parametrize("sig,code,word", [("SIGTERM", 143, "terminated"), ("SIGINT", 130, "interrupted")])
def test_a_signal_a_finalizer_swallows_still_ends_the_run(tmp_path: Path, runtime_dir: Path, sig: str, code: int,
                                                          word: str) -> None:
    """A signal whose exception was raised inside a weakref callback was lost ("Exception ignored in ..."),
    its handler had ignored further signals, and the run went on to its end deaf to a service manager's stop,
    then exited 0. It now stops at the next sample, restores, and ends in one line."""
    k = make_tree(tmp_path / "t", "jetson-nano")
    before = tree(k.root)
    out = tmp_path / "out.jsonl"
    p = _cli_child(SIGNAL_IN_A_FINALIZER.format(sig=sig), "run", "--board", "jetson-nano", "--sysfs-root",
                   str(k.root), "--cpu-khz", "max", "--limit", "200", "--output", str(out))
    assert p.returncode == code, p.stderr
    assert p.stderr.strip().splitlines() == ["edgeexit: " + word], p.stderr
    assert len(out.read_text().splitlines()) < 200
    assert diff(before, tree(k.root)) == []


def test_a_sigterm_during_teardown_keeps_the_exit_status_and_prints_nothing(tmp_path: Path) -> None:
    """A SIGTERM after the command had finished, while Python shut down, printed a threading traceback and
    exited 0 whatever the command had chosen."""
    code = """
        import atexit, os, signal
        def late():
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10000):
                pass
        atexit.register(late)
    """
    p = _cli_child(code, "boards", "--json")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    p = _cli_child(code, "run", "--limit", "1", "--policy", "nonsense")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_a_signal_during_the_restore_still_shows_the_idle_board(tmp_path: Path, runtime_dir: Path) -> None:
    """Ctrl-C during a session's restore was held until the restore ended, then raised before the sensors
    were set back to idle: the INA3221 files kept the run's load, and `restore` found nothing to restore."""
    k = make_tree(tmp_path / "t", "jetson-nano")
    before = snapshot(k.root)  # measurements included
    code = """
        import os, signal
        from edgeexit.dvfs.controller import DvfsController
        restore = DvfsController.restore_checked
        def signalled(self, *args, **kwargs):
            os.kill(os.getpid(), signal.SIGINT)
            return restore(self, *args, **kwargs)
        DvfsController.restore_checked = signalled
    """
    p = _cli_child(code, "run", "--board", "jetson-nano", "--sysfs-root", str(k.root), "--cpu-khz", "max",
                   "--limit", "5")
    assert p.returncode == 130, p.stderr
    assert diff(before, snapshot(k.root)) == []


def test_sim_init_interrupted_twice_leaves_nothing(tmp_path: Path) -> None:
    """Ctrl-C then SIGTERM 6 ms later: the second signal cut the cleanup of the half-built tree short, and
    every command then refused what was left (`scaling_min_freq does not exist`, `not empty`)."""
    code = """
        import os, shutil, signal
        import edgeexit.sim.tree as tree
        build = tree.build_tree
        def half(root, board, profile):
            (root / "sys").mkdir(parents=True)
            raise KeyboardInterrupt
        tree.build_tree = half
        rmtree = shutil.rmtree
        def signalled(path, *args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)
            return rmtree(path, *args, **kwargs)
        shutil.rmtree = signalled
    """
    target = tmp_path / "new" / "tree"
    p = _cli_child(code, "sim", "init", "--board", "jetson-nano", str(target))
    assert p.returncode in (130, 143), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "new").exists()


def test_a_signal_answered_does_not_stop_the_next_run() -> None:
    """The record of a signal is dropped once its exception is seen leaving a run or a board session: a
    library caller (a notebook) that catches the Ctrl-C and runs again is not stopped by it a second time."""
    from edgeexit.bundle import load_bundle
    from edgeexit.dvfs import open_board
    from edgeexit.policies import make_policy
    from edgeexit.runner import run_samples
    from edgeexit.runtime import Runtime
    from edgeexit.signals import caught_signal, note_caught

    bundle = load_bundle()
    samples = bundle.split("evaluation").take(3)
    with Runtime(bundle) as rt:
        note_caught(signal.SIGINT)  # what a handler does before it raises; as if a finalizer then lost it
        with pytest.raises(KeyboardInterrupt):
            run_samples(rt, make_policy("full", bundle), samples)  # raised again at the next sample
        assert caught_signal() is None
        assert len(run_samples(rt, make_policy("full", bundle), samples).records) == 3
        with pytest.raises(KeyboardInterrupt):
            with open_board("jetson-nano", simulate=True):
                note_caught(signal.SIGINT)
                raise KeyboardInterrupt
        assert caught_signal() is None
        assert len(run_samples(rt, make_policy("full", bundle), samples).records) == 3


LONG_RUN = ["run", "--board", "jetson-nano", "--cpu-khz", "921600", "--policy", "full", "--limit", "1000",
            "--period-ms", "20"]


def _started(p: "subprocess.Popen[str]", state_dir: Path) -> None:
    """Wait until the run has pinned the board (its state file is written before the first write)."""
    import time

    for _ in range(600):
        if any(state_dir.glob("**/*.json")) or p.poll() is not None:
            return
        time.sleep(0.05)


@pytest.mark.parametrize("sig,code,word", [("SIGHUP", 129, "terminated by SIGHUP"),
                                           ("SIGQUIT", 131, "terminated by SIGQUIT")])
def test_a_hang_up_restores_the_board_like_sigterm(tmp_path: Path, runtime_dir: Path, sig: str, code: int,
                                                   word: str) -> None:
    """An SSH session that dropped (SIGHUP) or Ctrl-\\ (SIGQUIT) killed a run outright: the board stayed pinned
    at userspace 921600 until `edgeexit restore`. They now unwind through the restore as SIGTERM does."""
    k = make_tree(tmp_path / "t", "jetson-nano")
    before = tree(k.root)
    p = subprocess.Popen([sys.executable, "-m", "edgeexit"] + LONG_RUN + ["--sysfs-root", str(k.root)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True)
    _started(p, runtime_dir)
    p.send_signal(getattr(signal, sig))
    _, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    assert err.strip().splitlines()[-1] == "edgeexit: " + word, err
    assert "Traceback" not in err
    assert diff(before, tree(k.root)) == []
    assert not list(runtime_dir.glob("**/*.json"))  # nothing left for `edgeexit restore`


def test_a_hang_up_ignored_by_nohup_stays_ignored(tmp_path: Path, runtime_dir: Path) -> None:
    k = make_tree(tmp_path / "t", "jetson-nano")
    p = subprocess.Popen([sys.executable, "-m", "edgeexit"] + LONG_RUN[:-4] + ["--limit", "30", "--sysfs-root", str(k.root)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True,
                         preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    _started(p, runtime_dir)
    p.send_signal(signal.SIGHUP)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err  # ran to its end
