"""Run the real console entry point in a subprocess, as a user would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Dict, Optional


def edgeexit(*args: str, env: Optional[Dict[str, str]] = None, timeout: float = 300) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "edgeexit"] + list(args), capture_output=True, text=True, env=e, timeout=timeout
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit, no traceback, exactly one line on stderr naming the problem."""
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def json_out(proc: subprocess.CompletedProcess) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
