"""A plain (non-editable) install carries the board configs, firmware profiles and the demo bundle,
and finds them without the source tree."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: no download at test time (setuptools and wheel come with the test extra)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
                   check=True, capture_output=True)
    (whl,) = out.glob("edgeexit-*.whl")
    return whl


def test_wheel_carries_the_data(wheel: Path):
    names = set(zipfile.ZipFile(str(wheel)).namelist())
    boards = sorted(p.name for p in (REPO / "board_configs").glob("*.toml"))
    assert boards
    for name in boards:
        assert "edgeexit/board_configs/" + name in names
        assert "edgeexit/firmware_profiles/" + name in names
    for f in ("manifest.json", "calibration.json", "calib.npz", "eval.npz", "block0.tflite", "exit7.tflite"):
        assert "edgeexit/models/demo/" + f in names


def test_wheel_metadata_license_and_runtime_requirements(wheel: Path):
    """click 7 lacks FloatRange(min_open=...), so every command crashed on it (Debian 11 ships 7.1.2); psutil
    is for the soak test only; Apache-2.0 wants its text in every distribution."""
    z = zipfile.ZipFile(str(wheel))
    names = z.namelist()
    meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    runtime = [l for l in meta.splitlines() if l.startswith("Requires-Dist:") and "extra ==" not in l]
    assert any(l.startswith("Requires-Dist: click>=8.0") for l in runtime), runtime
    assert not any("psutil" in l for l in runtime) and not any("tensorflow" in l for l in runtime), runtime
    assert any(n.endswith("LICENSE") and "Apache License" in z.read(n).decode() for n in names if ".dist-info/" in n)


def test_installed_copy_runs_outside_the_source_tree(wheel: Path, tmp_path: Path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = ("import sys; sys.path.insert(0, {!r}); import edgeexit, edgeexit.paths as p; "
            "assert edgeexit.__file__.startswith({!r}), edgeexit.__file__; "
            "print(p.board_configs_dir()); sys.argv = ['edgeexit', 'run', '--limit', '5', '--json']; "
            "from edgeexit.cli import main; main()").format(str(target), str(target))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    p = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    first, rest = p.stdout.split("\n", 1)
    assert first.startswith(str(target))
    assert json.loads(rest)["n"] == 5


def test_installed_console_script_runs(wheel: Path, tmp_path: Path):
    """The `edgeexit` script pip writes (its entry point, edgeexit.console:main) runs from the install."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(target))
    p = subprocess.run([sys.executable, str(target / "bin" / "edgeexit"), "boards", "--json"], cwd=str(tmp_path),
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    boards = json.loads(p.stdout)["boards"]
    assert "jetson-nano" in {b["name"] for b in boards}
    assert all(b["config"].startswith(str(target)) for b in boards)  # the installed configs, not the checkout's
