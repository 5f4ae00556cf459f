"""A disk that fills mid-record: the records file keeps whole records only."""
from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

from tests.faults.helpers import diff, tree
from tests.sim.helpers import make_tree

LIMIT_BYTES = 20000  # a few dozen records; the tree's files and the state file stay far below it


def _file_size_limit() -> None:
    # The kernel then writes up to the limit and fails the rest with EFBIG, as a full disk does with ENOSPC.
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, LIMIT_BYTES))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_a_write_cut_short_leaves_only_whole_records(tmp_path: Path, runtime_dir: Path) -> None:
    """A review on a 64 KiB tmpfs: 149 records, then 102 bytes of the 150th ("...,"host_latency_ms":")."""
    k = make_tree(tmp_path / "t", "jetson-nano")
    before = tree(k.root)
    out = tmp_path / "records.jsonl"
    p = subprocess.run([sys.executable, "-m", "edgeexit", "run", "--board", "jetson-nano", "--sysfs-root", str(k.root),
                        "--cpu-khz", "max", "--limit", "1000", "--output", str(out)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=300,
                       preexec_fn=_file_size_limit)
    assert p.returncode != 0
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "cannot write the records to {} (File too large)".format(out) in lines[0], p.stderr
    text = out.read_bytes()
    assert 0 < len(text) <= LIMIT_BYTES and text.endswith(b"\n")
    records = [json.loads(l) for l in text.decode().splitlines()]
    assert [r["index"] for r in records] == list(range(len(records)))
    assert diff(before, tree(k.root)) == []
