"""A full or closed stdout: the JSON result or the records cannot go there, and the run says so in one line.
A review: `> /dev/full` said only "No space left on device" (exit 1); `>&-` exited 0 with the result lost."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, List

import pytest

RUN = ["run", "--board", "jetson-nano", "--simulate", "--limit", "3"]


def _edgeexit(args: List[str], stdout: Any = None, close_stdout: bool = False) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "edgeexit"] + args, stdout=stdout, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300, preexec_fn=(lambda: os.close(1)) if close_stdout else None)


@pytest.mark.parametrize("args", [RUN + ["--json"], ["boards", "--json"], ["status", "--json", "--board", "jetson-nano",
                                                                             "--sysfs-root", "/nonexistent-edgeexit"]])
def test_json_to_a_full_stdout_says_stdout(args: List[str]) -> None:
    with open("/dev/full", "w") as full:
        p = _edgeexit(args, stdout=full)
    lines = p.stderr.strip().splitlines()
    if "status" in args:  # refused before any output: its own line
        assert p.returncode == 2 and len(lines) == 1 and "JSON" not in lines[0], p.stderr
        return
    assert p.returncode == 2 and lines == ["edgeexit: error: cannot write the JSON result to stdout (No space left on "
                                           "device); send it somewhere with room, or leave --json out"], p.stderr


@pytest.mark.parametrize("args, what", [(RUN + ["--json"], "the JSON result"), (["boards", "--json"], "the JSON result"),
                                        (RUN + ["--output", "-"], "the records")])
def test_a_closed_stdout_is_an_error_not_a_silent_success(args: List[str], what: str) -> None:
    p = _edgeexit(args, close_stdout=True)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1, p.stderr
    assert lines[0].startswith("edgeexit: error: stdout is closed, so {} would be lost".format(what)), p.stderr
