"""Segmented vs monolithic latency, and the runtime's own overhead per executed segment.

    python -m tools.make_heavy_bundle --out out/heavy        # needs the [tools] extra, once
    python benchmarks/segment_overhead.py --heavy out/heavy   # [--interpreter tflite] [--json]

Prints, on the compute-heavier bundle:
  * ratio = median latency of the full-depth segmented run (every block + the final head, through
    edgeexit's runtime) / median latency of one monolithic .tflite of the same network (goal <= 1.05);
  * overhead_us_per_segment = (inference wall time - time inside invoke()) / segments executed, for
    `full` and `threshold` (goal <= 5 us): set/get tensor copies, requantization, policy and bookkeeping.
And the same overhead figure on the demo bundle, where segments are tiny. Nothing is hard-coded.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from edgeexit.bundle import load_bundle
from edgeexit.bundle.data import quantize_inputs
from edgeexit.errors import EdgeExitError
from edgeexit.interpreter import open_interpreter
from edgeexit.policies.simple import FullPolicy, ThresholdPolicy
from edgeexit.runtime import Runtime


def _median_ms(samples_ns: List[int]) -> float:
    return statistics.median(samples_ns) / 1e6


def monolithic_ms(rt: Runtime, path: Path, xq: np.ndarray, reps: int, threads: int) -> float:
    it = open_interpreter(rt.backend, path, threads)
    di = it.get_input_details()[0]
    do = it.get_output_details()[0]
    times = []
    for i in range(reps):
        x = xq[i % len(xq)]
        t0 = time.perf_counter_ns()
        it.set_tensor(di["index"], x)
        it.invoke()
        it.get_tensor(do["index"])
        times.append(time.perf_counter_ns() - t0)
    return _median_ms(times)


def runtime_stats(rt: Runtime, policy: Any, xq: np.ndarray, reps: int) -> Dict[str, float]:
    policy.bind(rt)
    wall, overhead, segs = [], [], []
    for i in range(reps):
        res = rt.infer(xq[i % len(xq)], policy)
        invoke_ns = sum(ns for _, ns in res.segment_ns)
        n = len(res.segment_ns)
        wall.append(int(res.latency_ms * 1e6))
        overhead.append((res.latency_ms * 1e6 - invoke_ns) / n / 1e3)
        segs.append(n)
    return {
        "median_latency_ms": _median_ms(wall),
        "overhead_us_per_segment": statistics.median(overhead),
        "mean_segments": float(np.mean(segs)),
    }


def measure(bundle_dir: Path, interpreter: str, threads: int, reps: int, warmup: int, mono: bool) -> Dict[str, Any]:
    bundle = load_bundle(bundle_dir)
    with Runtime(bundle, interpreter=interpreter, num_threads=threads) as rt:
        split = bundle.split("evaluation").take(64)
        xq = quantize_inputs(split.x, bundle.manifest.input)
        # Thresholds: the stored calibration where there is one, else mid-range so exits are mixed.
        th = bundle.calibration.get("threshold", {}).get("thresholds") or [0.5] * len(bundle.exits)
        policies = {"full": FullPolicy(), "threshold": ThresholdPolicy(th)}
        for p in policies.values():
            if warmup:  # a median of no inferences is no warm-up
                runtime_stats(rt, p, xq, warmup)
        out: Dict[str, Any] = {
            "bundle": bundle.name,
            "full_macs": rt.full_macs,
            "segments": len(rt.blocks) + len(rt.exits),
            "requantized_boundaries": rt.requantized_boundaries,
        }
        for name, p in policies.items():
            out[name] = runtime_stats(rt, p, xq, reps)
        if mono:
            mono_path = bundle_dir / "monolithic.tflite"
            if warmup:
                monolithic_ms(rt, mono_path, xq, warmup, threads)
            out["monolithic_ms"] = monolithic_ms(rt, mono_path, xq, reps, threads)
            out["segmented_over_monolithic"] = out["full"]["median_latency_ms"] / out["monolithic_ms"]
        out["interpreter"] = "{} {}".format(rt.backend.name, rt.backend.version)
    return out


def _at_least(lo: int) -> Any:
    """An argparse type: an integer >= ``lo`` (0 reps would end in a median of nothing)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError("{!r} is not an integer".format(text)) from None
        if value < lo:
            raise argparse.ArgumentTypeError("{} is out of range: give an integer >= {}".format(value, lo))
        return value
    return parse


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heavy", type=Path, required=True, help="bundle dir from tools.make_heavy_bundle (with monolithic.tflite)")
    ap.add_argument("--interpreter", default=None, help="litert or tflite (default: auto)")
    ap.add_argument("--threads", type=_at_least(1), default=1, help="interpreter threads per segment (default: 1)")
    ap.add_argument("--reps", type=_at_least(1), default=300,
                    help="timed inferences per arm on the heavy bundle; the demo gets 3x as many, its segments being "
                         "tiny (default: 300)")
    ap.add_argument("--warmup", type=_at_least(0), default=30, help="untimed inferences before each arm (default: 30)")
    ap.add_argument("--json", action="store_true", help="print the measurements as JSON instead of the text summary")
    a = ap.parse_args()
    if not (a.heavy / "manifest.json").is_file():
        ap.error("--heavy {}: no bundle there; make it with `python -m tools.make_heavy_bundle --out {}` (needs the "
                 "[tools] extra)".format(a.heavy, a.heavy))
    result = {
        "host": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(), "python": sys.version.split()[0]},
        "threads": a.threads,
        "heavy": measure(a.heavy, a.interpreter, a.threads, a.reps, a.warmup, mono=True),
        "demo": measure(load_bundle().root, a.interpreter, a.threads, a.reps * 3, a.warmup, mono=False),
    }
    if a.json:
        print(json.dumps(result, indent=2))
        return 0
    h, d = result["heavy"], result["demo"]
    print("interpreter {}, {} thread(s), {} {}".format(h["interpreter"], a.threads, result["host"]["machine"], result["host"]["python"]))
    print("heavy bundle {} ({:.1f} MMACs, {} segments, {} requantized boundaries)".format(
        h["bundle"], h["full_macs"] / 1e6, h["segments"], h["requantized_boundaries"]))
    print("  monolithic .tflite           {:8.3f} ms".format(h["monolithic_ms"]))
    print("  segmented full depth         {:8.3f} ms   ratio {:.3f} (goal <= 1.05)".format(
        h["full"]["median_latency_ms"], h["segmented_over_monolithic"]))
    for name in ("full", "threshold"):
        print("  overhead per segment, {:9s} {:6.2f} us (goal <= 5)".format(name, h[name]["overhead_us_per_segment"]))
    print("demo bundle {} ({} segments)".format(d["bundle"], d["segments"]))
    for name in ("full", "threshold"):
        print("  overhead per segment, {:9s} {:6.2f} us, median latency {:.3f} ms".format(
            name, d[name]["overhead_us_per_segment"], d[name]["median_latency_ms"]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EdgeExitError as err:  # a damaged bundle: one line naming the fix, as the CLI gives
        sys.exit("segment_overhead: error: {}".format(err))
