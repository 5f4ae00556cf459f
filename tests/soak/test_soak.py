"""Soak: thousands of inferences with DVFS changes on a simulated board, with a power meter sampling
its sensors in the background; resident memory and open files must not grow.

CI runs a trimmed soak (2,000 inferences, a DVFS change every 10). The long version:
``EDGEEXIT_SOAK_FULL=1`` (100,000 inferences) or ``EDGEEXIT_SOAK_INFERENCES=N``.
"""
from __future__ import annotations

import dataclasses
import gc
import os
from pathlib import Path

import psutil
import pytest

from edgeexit.bundle import load_bundle
from edgeexit.dvfs import open_board
from edgeexit.energy.factory import meter_for_board
from edgeexit.energy.sampler import Sampler
from edgeexit.policies import make_policy
from edgeexit.probes import make_probe
from edgeexit.records import RecordWriter
from edgeexit.runner import run_samples
from edgeexit.runtime import Runtime
from tests.sim.helpers import make_tree

CHUNK = 10  # inferences between DVFS changes
WARMUP_CHUNKS = 20  # allocator pools, interpreter caches and lazy imports settle first
RSS_SLACK_BYTES = 16 * 1024 * 1024  # allocator noise; a per-inference leak of ~1 KiB shows over 100k


def _inferences() -> int:
    if os.environ.get("EDGEEXIT_SOAK_INFERENCES"):
        return int(os.environ["EDGEEXIT_SOAK_INFERENCES"])
    return 100000 if os.environ.get("EDGEEXIT_SOAK_FULL") == "1" else 2000


@pytest.mark.slow
def test_soak_no_memory_or_file_growth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEEXIT_RUNTIME_DIR", str(tmp_path / "run"))
    n = _inferences()
    k = make_tree(tmp_path / "t", "jetson-nano")
    bundle = load_bundle()
    samples = bundle.split("evaluation")
    policy = make_policy("threshold", bundle)
    proc = psutil.Process()
    base_rss = base_fds = None
    done = changes = 0
    with open_board("jetson-nano", sysfs_root=k.root) as session, Runtime(bundle) as rt, \
            RecordWriter(tmp_path / "soak.jsonl") as writer:
        board = make_probe(session, threads=1)
        meter = meter_for_board(dataclasses.asdict(session.board.power), session.root)
        sampler = Sampler(meter, rate_hz=200.0).start()
        try:
            opps = session.controller.cpu_opps_khz()
            gpu = session.controller.gpu_opps_hz()
            chunk_i = 0
            while done < n:
                start = done % (len(samples) - CHUNK)
                session.controller.set_cpu_khz(opps[chunk_i % len(opps)])
                session.controller.set_gpu_hz(gpu[chunk_i % len(gpu)])
                changes += 1
                sampler.begin_window("chunk")
                run_samples(rt, policy, _slice(samples, start, CHUNK), writer=writer, probe=board.probe)
                sampler.end_window("chunk")
                done += CHUNK
                chunk_i += 1
                if chunk_i == WARMUP_CHUNKS:
                    gc.collect()
                    base_rss, base_fds = proc.memory_info().rss, proc.num_fds()
        finally:
            sampler.close()
            board.close()
        gc.collect()
        rss, fds = proc.memory_info().rss, proc.num_fds()
        assert session.controller.honour_events == [] and session.controller.guard_events == []
    assert base_rss is not None and base_fds is not None
    assert fds <= base_fds, "open files grew from {} to {} over {} inferences".format(base_fds, fds, n)
    assert rss - base_rss < RSS_SLACK_BYTES, "RSS grew by {:.1f} MiB over {} inferences".format(
        (rss - base_rss) / 2 ** 20, n)
    assert changes == n // CHUNK and (tmp_path / "soak.jsonl").read_bytes().count(b"\n") == n


def _slice(samples, start: int, count: int):  # type: ignore[no-untyped-def]
    """samples[start:start+count] as Samples."""
    return dataclasses.replace(samples, x=samples.x[start:start + count],
                               y=None if samples.y is None else samples.y[start:start + count])
