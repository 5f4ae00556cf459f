"""A given --profile is always checked, and said to be unused when no DVFS planner reads it (--dvfs none,
--cpu-khz pinning, --dvfs auto with a policy that makes no forecast), instead of being dropped silently."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List

import pytest

from edgeexit.bundle import load_bundle
from edgeexit.dvfs import open_board
from edgeexit.errors import CalibrationError
from edgeexit.execute import execute
from edgeexit.policies import make_policy
from edgeexit.runtime import Runtime
from tests.cli.helpers import assert_one_line_error, edgeexit

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def profile(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prof") / "nano.json"
    p = edgeexit("profile", "--board", "jetson-nano", "--simulate", "--out", str(path), "--json")
    assert p.returncode == 0, p.stderr
    return path


def _execute(profile: Path, dvfs: str, board: bool = True, pin_khz: int = 0) -> List[str]:
    b = load_bundle()
    msgs = []  # type: List[str]
    with Runtime(b) as rt:
        pol = make_policy("threshold", b)
        samples = b.split("evaluation").take(3)
        if not board:
            execute(b, rt, pol, samples, profile=profile, warn=msgs.append)
            return msgs
        with open_board("jetson-nano", simulate=True) as session:
            if pin_khz:
                session.controller.set_cpu_khz(pin_khz)
            execute(b, rt, pol, samples, session=session, dvfs=dvfs, profile=profile, warn=msgs.append)
    return msgs


@pytest.mark.parametrize("board", [True, False])
def test_a_bad_profile_is_refused_even_when_nothing_plans(tmp_path: Path, profile: Path, board: bool):
    bad_files = {"missing.json": None, "passwd": "root:x:0:0:root:/root:/bin/bash\n", "other.json": "{}"}
    for name, text in bad_files.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(CalibrationError, match="edgeexit profile"):
            _execute(path, "none", board)
    if board:  # a profile of another board is refused as a planning run refuses it
        data = json.loads(profile.read_text())
        data["board"] = "jetson-tx2"
        other = tmp_path / "tx2.json"
        other.write_text(json.dumps(data))
        with pytest.raises(CalibrationError, match="measured on jetson-tx2"):
            _execute(other, "none")


def test_a_good_unused_profile_is_warned_about_once(profile: Path):
    msgs = _execute(profile, "none", pin_khz=921600)  # unpinned, the simulated board's governor is emulated from it
    assert len(msgs) == 1 and "--profile {} is unused".format(profile) in msgs[0] and "--dvfs" in msgs[0]
    assert len(_execute(profile, "none", board=False)) == 1
    assert _execute(profile, "governor") == []  # a planner reads it: nothing to say


def test_cli_checks_the_profile_with_or_without_planning(profile: Path):
    base = ("run", "--board", "jetson-nano", "--simulate", "--limit", "3")
    for extra in ((), ("--cpu-khz", "max"), ("--dvfs", "none"), ("--dvfs", "governor")):
        for bad in ("/nonexistent.json", "/etc/passwd"):
            assert_one_line_error(edgeexit(*base, "--profile", bad, *extra), "profile {}".format(bad), "edgeexit profile")
    ok = edgeexit(*base, "--profile", str(profile), "--cpu-khz", "max")
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.count("is unused") == 1, ok.stderr
    used = edgeexit(*base, "--profile", str(profile), "--dvfs", "governor")
    assert used.returncode == 0 and "is unused" not in used.stderr, used.stderr
