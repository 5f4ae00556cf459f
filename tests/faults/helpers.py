"""Helpers for the fault suites: `edgeexit run` subprocesses, JSONL checks, tree comparison."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

from tests.sim.helpers import snapshot

# What must come back byte for byte is every *setting*: the whole tree, the simulator's hidden state
# included (its injected-fault file is removed once its last fault is consumed). Left out are only
# the power sensors' *measurements* (INA3221 *_input/ui_input_* files, the Pi 5 PMIC's ADC text and
# the PMIC readings kept in the hidden state): a simulated run publishes its modelled power there,
# as a real board's sensors change by themselves, and nothing restores a measurement.

def _is_measurement(rel: str) -> bool:
    if rel.startswith(".edgeexit-sim/vcgencmd/"):
        return True
    name = rel.rsplit("/", 1)[-1]
    return rel.startswith("sys/bus/i2c/drivers/ina3221") and (name.endswith("_input") or name.startswith("ui_input_"))


def tree(root: Path) -> Dict[str, bytes]:
    """relpath -> bytes of every setting under ``root`` (see above for what is left out)."""
    out = {k: v for k, v in snapshot(root).items() if not _is_measurement(k)}
    state = out.get(".edgeexit-sim/state.json")
    if state is not None:
        data = json.loads(state.decode())
        data.pop("pmic", None)
        out[".edgeexit-sim/state.json"] = json.dumps(data, sort_keys=True).encode()
    return out


def diff(a: Dict[str, bytes], b: Dict[str, bytes]) -> List[str]:
    """Paths that differ, for readable assertion messages."""
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def start_run(root: Path, out: Path, *extra: str, board: str = "jetson-nano") -> "subprocess.Popen[str]":
    """`edgeexit run` on a simulated tree (or FUSE mount), writing JSONL to ``out``."""
    cmd = [sys.executable, "-m", "edgeexit", "run", "--board", board, "--sysfs-root", str(root),
           "--output", str(out)] + list(extra)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                            env=dict(os.environ))


def wait_for_lines(out: Path, n: int, proc: "subprocess.Popen[str]", timeout_s: float = 60.0) -> None:
    """Wait until ``out`` holds ``n`` records (the run is past pinning and inferring)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:  # the run's output check makes and removes the file before the run writes it
            if out.read_bytes().count(b"\n") >= n:
                return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            raise AssertionError("run ended early ({}): {}".format(proc.returncode, proc.stderr.read() if proc.stderr else ""))
        time.sleep(0.005)
    raise AssertionError("run wrote fewer than {} records in {} s".format(n, timeout_s))


def check_jsonl(out: Path) -> List[dict]:
    """Every line of a (possibly killed) run's output is one complete JSON record."""
    if not out.exists():
        return []
    data = out.read_bytes()
    assert not data or data.endswith(b"\n"), "the last record is torn: {!r}".format(data[-80:])
    records = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    assert [r["index"] for r in records] == list(range(len(records)))
    return records


def cli(*args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run([sys.executable, "-m", "edgeexit"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=dict(os.environ), timeout=120)


def one_line_error(proc: "subprocess.CompletedProcess[str]", *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout
    lines = [l for l in proc.stderr.splitlines() if l.strip() and not l.startswith(("INFO:", "edgeexit: board "))]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def fork_child(work: Callable[[], None]) -> int:
    """Fork a child that runs ``work``; returns its pid. The child ends with os._exit, never unwinding into
    pytest: its exit status is 0 when ``work`` returned, SystemExit's code (128 + signal from SIGTERM), else 3."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 3
        try:
            work()
            code = 0
        except SystemExit as err:
            code = int(err.code or 0)
        finally:
            os._exit(code)
    return pid
