"""Profile files (`--profile`, `--latency-profile`, the bundle's profiles/) edited by hand, and `profile --out`
pointed at what is not a regular file: one line naming the fix, never a traceback, a self-contradicting or
doubly wrapped message, or a replaced device node."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, Dict

import pytest

from edgeexit.boards.config import load_board
from edgeexit.boards.profile import load_profile
from edgeexit.bundle import load_bundle
from edgeexit.costmodel import PhysicsCostModel, SegmentLatency, load_profile_json
from edgeexit.errors import CalibrationError
from edgeexit.sim.physics import BoardPhysics
from tests.cli.helpers import assert_one_line_error, edgeexit, json_out

DEEP = "[" * 100000 + "]" * 100000


@pytest.fixture(scope="module")
def good(tmp_path_factory: Any) -> Dict[str, Any]:
    path = tmp_path_factory.mktemp("nano") / "profile.json"
    out = json_out(edgeexit("profile", "--board", "jetson-nano", "--simulate", "--out", str(path), "--json"))
    return dict(out["profile"])


def _load(tmp_path: Path, data: Any) -> Any:
    """What `edgeexit run --board jetson-nano --simulate --profile FILE` does with the file."""
    path = tmp_path / "p.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    bundle = load_bundle()
    fallback = PhysicsCostModel(BoardPhysics(load_profile(load_board("jetson-nano"))), bundle)
    return load_profile_json(path, bundle, "jetson-nano", fallback=fallback, threads=1)


@pytest.mark.parametrize("edit,needle", [
    ({"threads": "1"}, 'threads must be an integer from 1 to 64, not "1"'),  # read "measured with 1 ... uses 1"
    ({"threads": None}, "threads must be an integer from 1 to 64, not null"),  # read "measured with None"
    ({"threads": 0}, "threads must be an integer from 1 to 64, not 0"),
    ({"transition_ms": float("nan")}, "transition_ms must be a number of milliseconds from 0 to 1000, not NaN"),
    ({"transition_ms": -1e9}, "transition_ms must be a number of milliseconds from 0 to 1000, not -1000000000.0"),
    ({"transition_ms": "0.3"}, "transition_ms must be a number"),
    ({"transition_ms": 10 ** 400}, "transition_ms must be a number of milliseconds from 0 to 1000"),  # OverflowError
])
def test_bad_profile_scalars_are_refused(tmp_path: Path, good: Dict[str, Any], edit: Dict[str, Any], needle: str) -> None:
    with pytest.raises(CalibrationError) as err:
        _load(tmp_path, dict(good, **edit))
    msg = str(err.value)
    assert needle in msg and "is malformed" in msg and "run `edgeexit profile` again" in msg and "\n" not in msg


def test_a_mismatched_effective_clock_list_is_wrapped_once(tmp_path: Path, good: Dict[str, Any]) -> None:
    data = dict(good, effective_cpu_khz=[999] * len(good["cpu_opps_khz"]))
    with pytest.raises(CalibrationError) as err:
        _load(tmp_path, data)
    msg = str(err.value)
    assert msg.count("profile ") == 1 and "malformed" not in msg and "no operating point ran at the clock" in msg


def test_operating_points_the_board_lacks_are_refused(tmp_path: Path, good: Dict[str, Any]) -> None:
    """Checked against the board's own cpufreq table (the simulated kernel's here), not the firmware profile's:
    on a real board whose table differs from ours, a profile measured there is right."""
    opps = list(good["cpu_opps_khz"])
    opps[3] += 1  # still ascending; the column's figures are the old ones
    path = tmp_path / "p.json"
    path.write_text(json.dumps(dict(good, cpu_opps_khz=opps, effective_cpu_khz=opps)))
    res = edgeexit("run", "--board", "jetson-nano", "--simulate", "--policy", "predictive", "--deadline-ms", "4",
                   "--limit", "2", "--profile", str(path))
    assert_one_line_error(res, "{} kHz".format(opps[3]), "jetson-nano's cpufreq table", "run `edgeexit profile` again")
    _load(tmp_path, dict(good, cpu_opps_khz=opps, effective_cpu_khz=opps))  # no board table given: not checked


def test_the_unedited_profile_loads(tmp_path: Path, good: Dict[str, Any]) -> None:
    assert _load(tmp_path, good).cpu_opps_khz == good["cpu_opps_khz"]


@pytest.mark.parametrize("text,needle", [(DEEP, "nested too deeply"), ("\udcff", "not UTF-8 text")])
def test_unparsable_profile_json_is_one_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(CalibrationError, match="cannot read profile .*{}.*run `edgeexit profile` again".format(needle)):
        SegmentLatency.from_profile(path, load_bundle())


def test_cli_deep_profile_and_string_threads_are_one_line(tmp_path: Path, good: Dict[str, Any]) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text(DEEP)
    run = ("run", "--board", "jetson-nano", "--simulate", "--policy", "predictive", "--deadline-ms", "4", "--limit", "2")
    assert_one_line_error(edgeexit(*run, "--profile", str(deep)), "nested too deeply", "edgeexit profile")
    assert_one_line_error(edgeexit("calibrate", "--eenet-budget-ms", "1", "--latency-profile", str(deep)),
                          "nested too deeply", "edgeexit profile")
    text = tmp_path / "threads.json"
    text.write_text(json.dumps(dict(good, threads="1")))
    line = assert_one_line_error(edgeexit(*run, "--profile", str(text)), 'threads must be an integer')
    assert "this run uses" not in line


@pytest.mark.parametrize("kind", ["fifo", "link to fifo", "directory"])
def test_profile_out_refuses_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    """--out /dev/full replaced the device node itself: now anything but a regular file (or a link to one) is
    refused before profiling, and left as it was. (A FIFO stands in for the device: tests never touch /dev.)"""
    node = tmp_path / "node"
    node.mkdir() if kind == "directory" else os.mkfifo(str(node))
    out = node
    if kind == "link to fifo":
        out = tmp_path / "link.json"
        out.symlink_to(node)
    p = edgeexit("profile", "--board", "jetson-nano", "--simulate", "--out", str(out), timeout=60)
    assert_one_line_error(p, "--out")
    assert stat.S_ISDIR(os.lstat(str(node)).st_mode) if kind == "directory" else stat.S_ISFIFO(os.lstat(str(node)).st_mode)
    if kind != "directory":  # a directory is refused by click's own --out check
        assert "not a regular file" in p.stderr and "SIMULATED" not in p.stderr  # before the board was opened


def test_profile_out_through_a_symlink_replaces_its_target(tmp_path: Path) -> None:
    target = tmp_path / "profiles" / "nano.json"
    target.parent.mkdir()
    target.write_text("{}\n")
    link = tmp_path / "current.json"
    link.symlink_to(target)
    json_out(edgeexit("profile", "--board", "jetson-nano", "--simulate", "--out", str(link), "--json"))
    assert link.is_symlink() and os.readlink(str(link)) == str(target)  # the link was not replaced by a file
    assert json.loads(target.read_text())["board"] == "jetson-nano"
    assert sorted(p.name for p in target.parent.iterdir()) == ["nano.json"]
