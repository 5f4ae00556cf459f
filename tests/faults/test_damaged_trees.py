"""Trees and files damaged in ways a run used to hang on, or took for something else: a simulated tree whose
marker is unreadable, a FIFO where a sysfs node or the state file should be. Each is one line and a non-zero
exit, at once, and the tree is left as it was."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from edgeexit.dvfs.state import state_path
from edgeexit.sim.kernel import SIM_DIR
from tests.faults.helpers import cli, diff, tree
from tests.sim.helpers import make_tree

NANO = ["--board", "jetson-nano"]


@pytest.mark.parametrize("damage", ["not-json", "no-board", "missing"])
def test_a_damaged_marker_is_no_real_board(tmp_path: Path, damage: str) -> None:
    """The unreadable marker made the tree a real board to edgeexit: the run pinned it, unlabelled, exit 0,
    and left a frequency in scaling_setspeed."""
    root = tmp_path / "t"
    make_tree(root, "jetson-nano")
    marker = root / ".edgeexit-sim" / "board.json"
    if damage == "missing":
        marker.unlink()
    else:
        marker.write_bytes(b"\xff" if damage == "not-json" else b'{"format": 1}')
    before = tree(root)
    for cmd in (["run", "--limit", "2", "--cpu-khz", "921600"], ["status"], ["restore"]):
        res = cli(*cmd, *NANO, "--sysfs-root", str(root))
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1, res.stderr
        assert "is a damaged simulated tree" in lines[0] and "edgeexit sim init" in lines[0]
    assert diff(tree(root), before) == []


def test_a_fifo_for_a_node_or_the_state_file_does_not_hang(tmp_path: Path, runtime_dir: Path) -> None:
    root = tmp_path / "t"
    make_tree(root, "jetson-nano")
    node = root / "sys/devices/system/cpu/cpufreq/policy0/scaling_governor"
    node.unlink()
    os.mkfifo(str(node))
    for cmd in (["status"], ["run", "--limit", "2", "--cpu-khz", "max"]):
        res = cli(*cmd, *NANO, "--sysfs-root", str(root))  # cli's timeout: a hang fails the test
        assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "a FIFO or device, not a file" in res.stderr and "Traceback" not in res.stderr
    shutil.rmtree(str(root))
    make_tree(root, "jetson-nano")
    runtime_dir.mkdir(exist_ok=True)
    os.mkfifo(str(state_path("jetson-nano", root)))
    res = cli("restore", *NANO, "--sysfs-root", str(root))
    assert res.returncode == 2 and "is unreadable (a FIFO or device, not a file)" in res.stderr, res.stderr


def test_an_existing_output_survives_a_run_refused_in_its_setup(tmp_path: Path) -> None:
    """`--output` was truncated when the writer was made, before the checks of --profile and --dvfs ran; a
    new path was left as an empty file, with the folders made for it."""
    old = tmp_path / "o.jsonl"
    old.write_text('{"keep": "me"}\n')
    for extra in (["--profile", str(tmp_path / "missing.json")], ["--dvfs", "planned"]):
        for out in (old, tmp_path / "new" / "o.jsonl"):
            res = cli("run", "--limit", "2", *NANO, "--simulate", "--output", str(out), *extra)
            assert res.returncode == 2, res.stderr
    assert old.read_text() == '{"keep": "me"}\n' and not (tmp_path / "new").exists()
    assert cli("run", "--limit", "2", "--output", str(old)).returncode == 0
    assert len(old.read_text().splitlines()) == 2


def test_absurd_profile_values_are_refused(tmp_path: Path) -> None:
    """1e308 ms passed as a finite positive latency: the planner's energy sums overflowed with a raw numpy
    RuntimeWarning on stderr, and the run went on with exit 0."""
    import json

    from edgeexit.paths import demo_bundle_dir

    bundle = tmp_path / "b"
    shutil.copytree(str(demo_bundle_dir()), str(bundle))
    made = cli("profile", *NANO, "--simulate", "--model", str(bundle), "--json")
    assert made.returncode == 0, made.stderr
    path = Path(json.loads(made.stdout)["profile_path"])
    data = json.loads(path.read_text())
    data["segments"]["block1"]["latency_ms"] = [1e308] * len(data["cpu_opps_khz"])
    path.write_text(json.dumps(data))
    res = cli("run", "--limit", "2", *NANO, "--simulate", "--model", str(bundle), "--policy", "predictive",
              "--deadline-ms", "4", "--period-ms", "10")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "block1 latency_ms needs" in res.stderr and "up to" in res.stderr and "RuntimeWarning" not in res.stderr


def test_a_fractional_clock_is_named_as_not_whole() -> None:
    res = cli("run", "--limit", "2", *NANO, "--simulate", "--cpu-khz", "1.5")
    assert res.returncode == 2 and "--cpu-khz must be a whole number of kHz, 'min' or 'max'" in res.stderr, res.stderr


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_sim_init_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool) -> None:
    """A full disk stopped `sim init` half way: the half tree was then refused by `sim init` (not empty) and by
    every command (a damaged tree). What it made is removed; an empty directory given to it stays, empty."""
    import errno

    from edgeexit.boards.config import load_board
    from edgeexit.sim.kernel import SimulatedKernel

    real_put = SimulatedKernel.put
    calls = []

    def put_until_full(self: SimulatedKernel, rel: str, content: str, mode: int = 0o444) -> None:
        calls.append(rel)
        if len(calls) > 20:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.root / rel))
        real_put(self, rel, content, mode)

    monkeypatch.setattr(SimulatedKernel, "put", put_until_full)
    root = tmp_path / "a" / "b" / "t"
    if existing:
        root.mkdir(parents=True)
    with pytest.raises(OSError, match="No space left"):
        SimulatedKernel.create(root, load_board("jetson-nano"))
    assert len(calls) > 20
    if existing:
        assert root.is_dir() and list(root.iterdir()) == []
    else:
        assert list(tmp_path.iterdir()) == []


def test_a_governor_the_domain_does_not_offer_is_refused_before_any_write(tmp_path: Path) -> None:
    """Saved as it was, it could never be written back: the run ended with the CPU pinned in userspace and a
    restore that always failed. A board's own sysfs (no simulator: the simulated kernel would replay the edit
    through its rules, and refuse it)."""
    root = tmp_path / "t"
    make_tree(root, "jetson-nano")
    shutil.rmtree(str(root / SIM_DIR))
    (root / "sys/devices/system/cpu/cpufreq/policy0/scaling_governor").write_text("abc\n")
    before = tree(root)
    res = cli("run", "--limit", "2", *NANO, "--sysfs-root", str(root), "--cpu-khz", "921600")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "shows governor 'abc', which it does not offer" in lines[0]
    assert diff(tree(root), before) == []
