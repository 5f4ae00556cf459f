"""Running a policy over many samples: records, progress and the summary (the library behind `run`)."""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from edgeexit.bundle.data import Samples, check_given_samples, quantize_inputs
from edgeexit.policies.base import ExitPolicy, SampleState
from edgeexit.records import RecordWriter, RunSummary, percentile
from edgeexit.runtime import InferenceResult, Runtime, RuntimeHooks
from edgeexit.signals import reraise_caught, signal_answered


class BoardProbe(RuntimeHooks):
    """Board-side latency/energy of each inference (a power meter, or the simulated board's physics).

    The base class reports nothing, so latency comes from the host clock and energy is unknown.
    """

    latency_source = "host"
    energy_source: Optional[str] = None
    energy_method: Optional[str] = None  # how a meter's readings become a window's energy
    simulated = False

    def before_inference(self) -> None:
        """Just before an inference, outside its latency (the runtime's clock has not started)."""

    def measure(self, result: InferenceResult) -> Dict[str, Any]:
        """Extra record fields for the inference that just ended (``latency_ms``, ``energy_mj`` ...)."""
        return {}

    def hold(self, rec: Dict[str, Any]) -> List[Dict[str, Any]]:
        """Take the record just measured; return the records now complete, oldest first. A probe that
        completes a record later (a metered period's idle energy) keeps it until then and fills it in place."""
        return [rec]

    def flush(self, interrupted: bool = False) -> List[Dict[str, Any]]:
        """After the last inference: complete and return the records still held. ``interrupted``: the run
        ended by an error or an interrupt, so complete them at once, without measuring."""
        return []


def run_samples(
    runtime: Runtime,
    policy: ExitPolicy,
    samples: Samples,
    writer: Optional[RecordWriter] = None,
    probe: Optional[BoardProbe] = None,
    hooks: Sequence[RuntimeHooks] = (),
    on_progress: Optional[Callable[[int], None]] = None,
    pass_labels: bool = False,
    deadline_ms: Optional[float] = None,
    annotate: Optional[Callable[[], Dict[str, Any]]] = None,
) -> "RunOutcome":
    """Infer every sample; write one record each; return the records and a summary."""
    runtime.check_open()
    runtime.bind(policy)
    spec = runtime.bundle.manifest.input
    check_given_samples(samples, spec, runtime.bundle.manifest.num_classes)
    xq = quantize_inputs(samples.x, spec)
    y = samples.y
    all_hooks = list(hooks) + ([probe] if probe is not None else [])
    records: List[Dict[str, Any]] = []
    finished = False

    def emit(done: List[Dict[str, Any]]) -> None:
        if writer is not None:
            for rec in done:
                writer.write(rec)

    try:
        for i in range(len(samples)):
            reraise_caught()  # a signal whose exception a finalizer swallowed still ends the run
            state = SampleState(i, int(y[i]) if (pass_labels and y is not None) else -1)
            if probe is not None:
                probe.before_inference()
            res = runtime.infer(xq[i], policy, state, all_hooks)
            rec: Dict[str, Any] = {
                "index": i,
                "label": res.label,
                "exit": res.exit,
                "correct": None if y is None else bool(res.label == int(y[i])),
                "macs": res.macs,
                "latency_ms": round(res.latency_ms, 6),
                "host_latency_ms": round(res.latency_ms, 6),
                "heads": res.heads_run,
                # the last forecast, after any re-prediction (offline.Replay.planned keeps the first one)
                "planned_exit": res.planned_exit,
                # host invoke times, whatever latency_ms is (a simulated board's comes from its model)
                "host_segments_ms": {k: round(v, 6) for k, v in res.segment_latency_ms().items()},
            }
            fns = getattr(policy, "forecast_ns", None)
            if fns is not None:
                rec["forecast_us"] = fns / 1e3  # host time spent forecasting (Predictive Exit)
            if probe is not None:
                rec.update(probe.measure(res))
            if deadline_ms is not None:
                rec["deadline_missed"] = bool(rec["latency_ms"] > deadline_ms)
            if annotate is not None:
                rec.update(annotate())
            records.append(rec)
            emit(probe.hold(rec) if probe is not None else [rec])
            if on_progress is not None:
                on_progress(1)
        finished = True
    except (KeyboardInterrupt, SystemExit):
        signal_answered()  # seen leaving the run, so not swallowed: a caller who catches it may run again
        raise
    finally:
        # A record held for its period's end is written even when an error or an interrupt ends the run
        # (marked so, its open period unknown): every inference that ran has its record.
        if probe is not None:
            emit(probe.flush(interrupted=not finished))
    return RunOutcome(records=records, runtime=runtime, policy=policy, probe=probe, deadline_ms=deadline_ms)


class RunOutcome:
    def __init__(self, records: List[Dict[str, Any]], runtime: Runtime, policy: ExitPolicy, probe: Optional[BoardProbe],
                 deadline_ms: Optional[float] = None) -> None:
        self.records = records
        self.runtime = runtime
        self.policy = policy
        self.probe = probe
        self.deadline_ms = deadline_ms

    def summary(self, board: Optional[str] = None) -> RunSummary:
        recs = self.records
        rt = self.runtime
        correct = [r["correct"] for r in recs if r["correct"] is not None]
        macs = [r["macs"] for r in recs]
        lat = [r["latency_ms"] for r in recs]
        energies = [r.get("energy_mj") for r in recs]
        known = [e for e in energies if e is not None]
        hist = np.bincount([r["exit"] for r in recs], minlength=len(rt.exits)).tolist() if recs else []
        mean_macs = float(np.mean(macs)) if macs else float("nan")
        probe = self.probe
        extra: Dict[str, Any] = {}
        periods = [r.get("energy_period_mj") for r in recs]
        known_periods = [p for p in periods if p is not None]
        metered = probe is not None and probe.energy_method is not None
        if recs and recs[0].get("period_ms") is not None:
            # over the periods whose energy is known, as mean_energy_mj (a polled meter knows none before its
            # first read inside an inference; a window it could not cover is unknown; no meter knows none)
            extra["mean_energy_period_mj"] = float(np.mean(known_periods)) if known_periods else None
            extra["period_ms"] = recs[0].get("period_ms")
        actual = [r.get("period_actual_ms") for r in recs]
        if recs and all(a is not None for a in actual):  # metered periods: what the schedule really gave
            extra["mean_period_actual_ms"] = float(np.mean(actual))
            extra["period_overrun_rate"] = float(np.mean([bool(r.get("period_overrun")) for r in recs]))
        if metered:
            extra["energy_method"] = probe.energy_method
            if len(known) < len(recs):
                extra["energy_known"] = len(known)  # the means are over these records only
        if self.deadline_ms is not None:
            extra["deadline_ms"] = self.deadline_ms
            extra["deadline_miss_rate"] = float(np.mean([r["deadline_missed"] for r in recs])) if recs else None
        return RunSummary(
            n=len(recs),
            policy=self.policy.name,
            accuracy=(sum(correct) / len(correct)) if correct else None,
            mean_macs=mean_macs,
            full_macs=rt.full_macs,
            # full_macs > 0 is a manifest check (load_bundle); guarded here too, for runtimes built another way
            macs_reduction_vs_full=1.0 - mean_macs / rt.full_macs if recs and rt.full_macs > 0 else float("nan"),
            mean_latency_ms=float(np.mean(lat)) if lat else float("nan"),
            p99_latency_ms=percentile(lat, 99),
            latency_source=probe.latency_source if probe is not None else "host",
            mean_energy_mj=float(np.mean(known)) if known else None,
            energy_source=probe.energy_source if probe is not None else None,
            exit_histogram=hist,
            simulated=bool(probe is not None and probe.simulated),
            board=board,
            model=str(rt.bundle.root),
            interpreter="{} {}".format(rt.backend.name, rt.backend.version),
            extra=extra,
        )
