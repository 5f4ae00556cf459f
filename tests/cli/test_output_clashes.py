"""Outputs that would replace an input or each other, options that mean nothing without a board, and output
paths that are dangling links, symlink loops or FIFOs: one line naming the fix, exit 2, nothing written."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from edgeexit.errors import OutputError
from edgeexit.paths import demo_bundle_dir, writable_output
from tests.cli.helpers import assert_one_line_error, edgeexit

NANO = ("--board", "jetson-nano", "--simulate")


def _digests(folder: Path) -> Dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    b = tmp_path / "B"
    shutil.copytree(str(demo_bundle_dir()), str(b))
    return b


# --- A: an output that is an input, or another output -----------------------------------------------------
@pytest.mark.parametrize("name", ["manifest.json", "calibration.json", "eval.npz", "calib.npz", "block0.tflite"])
def test_profile_out_never_replaces_a_bundle_file(bundle: Path, name: str):
    before = _digests(bundle)
    line = assert_one_line_error(edgeexit("profile", *NANO, "--model", str(bundle), "--out", str(bundle / name)),
                                 "--out", name, "path of its own")
    assert line.count("\n") == 0
    assert _digests(bundle) == before


def test_run_output_never_replaces_a_bundle_file(bundle: Path):
    before = _digests(bundle)
    assert_one_line_error(edgeexit("run", "--limit", "2", "--model", str(bundle), "--output", str(bundle / "eval.npz")),
                          "--output", "evaluation split", "path of its own")
    # through a symlink too: the link is resolved
    link = bundle.parent / "link.jsonl"
    link.symlink_to(bundle / "manifest.json")
    assert_one_line_error(edgeexit("run", "--limit", "2", "--model", str(bundle), "--output", str(link)),
                          "--output", "manifest.json")
    assert _digests(bundle) == before


def test_run_output_never_replaces_the_input(tmp_path: Path):
    x = np.load(str(demo_bundle_dir() / "eval.npz"))["x"][:3]
    samples = tmp_path / "a.npy"
    np.save(str(samples), x)
    before = samples.read_bytes()
    assert_one_line_error(edgeexit("run", "--input", str(samples), "--output", str(samples)),
                          "--output", "--input", "path of its own")
    assert samples.read_bytes() == before


def test_profile_out_and_plot_on_one_file_are_refused(tmp_path: Path):
    target = tmp_path / "X.png"
    assert_one_line_error(edgeexit("profile", *NANO, "--out", str(target), "--plot", str(target)),
                          "--out", "--plot", "same file")
    assert not target.exists()


# --- B: board-only options without a board, and an empty --board ---------------------------------------------
@pytest.mark.parametrize("args", [("--thermal-limit-mc", "50000"), ("--meter", "ina3221"), ("--meter-rate-hz", "5")])
def test_board_options_without_a_board_are_refused(args):
    assert_one_line_error(edgeexit("run", "--limit", "2", *args), args[0], "need", "--board NAME")


def test_an_empty_board_is_refused():
    for cmd in (("run", "--limit", "2"), ("profile", "--simulate")):
        assert_one_line_error(edgeexit(*cmd, "--board", ""), "--board", "is empty")


# --- C/D: dangling links, symlink loops and FIFOs as outputs --------------------------------------------------
def test_a_dangling_link_as_output_writes_its_target(tmp_path: Path):
    for cmd, opt, name in ((("run", "--limit", "2"), "--output", "r.jsonl"),
                           (("profile",) + NANO, "--out", "p.json")):
        link = tmp_path / ("link-" + name)
        link.symlink_to(tmp_path / name)
        p = edgeexit(*cmd, opt, str(link), "--json")
        assert p.returncode == 0, p.stderr
        assert link.is_symlink() and (tmp_path / name).stat().st_size > 0


def test_a_symlink_loop_as_output_says_so(tmp_path: Path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert_one_line_error(edgeexit("run", "--limit", "2", "--output", str(tmp_path / "a")),
                          "Too many levels of symbolic links", "--output")
    with pytest.raises(OutputError, match="Too many levels of symbolic links"):
        writable_output(tmp_path / "a", "the plot", "--plot FILE")


def test_a_fifo_as_plot_is_refused_without_blocking(tmp_path: Path):
    fifo = tmp_path / "f.png"
    os.mkfifo(str(fifo))
    assert_one_line_error(edgeexit("profile", *NANO, "--plot", str(fifo), "--out", str(tmp_path / "p.json"),
                                   timeout=60), "--plot", "FIFO")
    assert not (tmp_path / "p.json").exists()


def test_writable_output_never_blocks_on_a_fifo(tmp_path: Path):
    fifo = tmp_path / "records"
    os.mkfifo(str(fifo))
    def hung(signum: int, frame: object) -> None:
        raise AssertionError("writable_output blocked on a FIFO that no process reads")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    try:
        with pytest.raises(OutputError, match="FIFO"):
            writable_output(fifo, "the records", "--output FILE")  # open(path, "a") blocked here for ever
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --- E: one line for a Runtime that cannot start --------------------------------------------------------------
def test_profile_with_a_missing_interpreter_prints_one_line():
    try:
        import tflite_runtime  # noqa: F401
        pytest.skip("tflite-runtime is installed here")
    except ImportError:
        pass
    assert_one_line_error(edgeexit("profile", *NANO, "--interpreter", "tflite", "--json"), "tflite")


def test_outputs_inside_the_boards_sysfs_are_refused(tmp_path: Path) -> None:
    """A review's `run --output TREE/sys/.../scaling_governor` wrote the records over the governor node, rc 0; only
    the next command on the tree noticed and put schedutil back."""
    tree = tmp_path / "nano"
    assert edgeexit("sim", "init", "--board", "jetson-nano", str(tree)).returncode == 0
    governor = tree / "sys/devices/system/cpu/cpufreq/policy0/scaling_governor"
    before = governor.read_bytes()
    on_tree = ("--board", "jetson-nano", "--sysfs-root", str(tree))
    for args in (("run",) + on_tree + ("--limit", "2", "--output", str(governor)),
                 ("profile",) + on_tree + ("--repeats", "1", "--out", str(tree / "sys/profile.json")),
                 ("profile",) + on_tree + ("--repeats", "1", "--out", str(tmp_path / "p.json"), "--plot",
                                           str(tree / ".edgeexit-sim/p.png")),
                 ("bench",) + on_tree + ("--limit", "10", "--out", str(tree / "sys/bench"))):
        assert_one_line_error(edgeexit(*args), "is inside the board's tree", "a path outside it")
    assert governor.read_bytes() == before
    assert not (tree / "sys/bench").exists() and not (tree / "sys/profile.json").exists()
    # the real board's sysfs is refused the same way, whatever the board
    assert_one_line_error(edgeexit("run", "--limit", "1", "--output", "/sys/kernel/x.jsonl"), "inside the board's sysfs")
    # the tree's device tree, which --board auto reads, and the runtime directory's state files
    assert_one_line_error(edgeexit("run", *on_tree, "--limit", "1", "--output", str(tree / "proc/device-tree/model")),
                          "inside the board's tree")
    from edgeexit.paths import runtime_dir
    assert_one_line_error(edgeexit("run", "--limit", "1", "--output", str(runtime_dir() / "x.state.json")),
                          "inside the runtime directory")
