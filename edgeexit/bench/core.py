"""The benchmark: calibrate every policy to one accuracy target, run each (with its DVFS mode) on a fresh
board session over the same evaluation samples, and derive the comparisons.

An *arm* is a policy with a DVFS mode. Policies without a forecast get the baselines a user would run:
race-to-idle at the maximum operating point, the board's default governor, and worst-case planning
for the deadline. Forecasting policies get the planner.
"""
from __future__ import annotations

import copy
import math
import platform
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import numpy as np

from edgeexit import __version__
from edgeexit.bundle import NOT_CALIBRATED, Bundle, load_bundle
from edgeexit.bundle.data import quantize_inputs
from edgeexit.calibration import collect, target_from, threshold_cost
from edgeexit.costmodel import (PhysicsCostModel, default_profile_path, load_profile_json, other_threads_note)
from edgeexit.deadlines import MAX_PERIOD_MS
from edgeexit.errors import CalibrationError, EdgeExitError, PolicyError, warn_stderr
from edgeexit.execute import execute
from edgeexit.offline import per_sample_cost, replay
from edgeexit.policies import make_policy
from edgeexit.policies.oracle import earliest_correct, exit_costs
from edgeexit.policies.predictive import enabled_exits
from edgeexit.policy_calibration import calibrate_all
from edgeexit.probes import board_physics, make_probe
from edgeexit.runtime import Runtime
from edgeexit.sim.physics import BoardPhysics

# (arm name, policy, dvfs mode) in report order
ARMS: List[Tuple[str, str, str]] = [
    ("full@max", "full", "race"),
    ("threshold@race", "threshold", "race"),
    ("threshold@governor", "threshold", "governor"),
    ("threshold@worst-case", "threshold", "worst-case"),
    ("predictive@planned", "predictive", "planned"),
    ("pe-heuristic@planned", "pe-heuristic", "planned"),
    ("eenet@race", "eenet", "race"),
    ("confidence-head@race", "confidence-head", "race"),
    ("oracle@planned", "oracle", "planned"),
]
POLICY_NAMES = sorted({p for _, p, _ in ARMS})
SWEEP_DROPS_PP = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # the accuracy sweep's targets, pp below the final exit
TIMELINE_INFERENCES = 200  # the inferences results.json keeps per-segment clocks (and re-solves) for


@dataclass
class BenchConfig:
    board: str
    out_dir: Path
    sysfs_root: Optional[Path] = None
    simulate: bool = False
    model_path: Optional[Path] = None
    deadline_ms: Optional[float] = None
    period_ms: Optional[float] = None
    # None: every policy, confidence-head only where the bundle has confidence heads; a list names them
    # explicitly, and one the bundle cannot run is an error rather than a quietly missing arm.
    policies: Optional[List[str]] = None
    max_drop_pp: float = 0.25
    target_accuracy: Optional[float] = None
    seed: int = 0
    limit: Optional[int] = None
    threads: int = 1
    interpreter: Optional[str] = None
    sweep: bool = True
    meter: str = "auto"
    sensitivity: Optional[bool] = None  # default: on for a simulated board
    bundle: Optional[Bundle] = None  # already loaded (the CLI checks it before --out is made); else model_path's
    # where each arm's DVFS controller warns; run_bench sets one that says each line once per bench, since
    # every arm opens its own session (an offline TX2 or AGX Orin policy was said 21 times)
    board_warn: Optional[Callable[[str], None]] = None


def _open(cfg: BenchConfig) -> Any:
    from edgeexit.dvfs import open_board

    return open_board(cfg.board, cfg.sysfs_root, cfg.simulate, warn=cfg.board_warn)


def _silent(msg: str) -> None:
    """The arms after the first: each would say again what the first said."""


def _once(warn: Callable[[str], None]) -> Callable[[str], None]:
    said: Set[str] = set()

    def once(msg: str) -> None:
        if msg not in said:
            said.add(msg)
            warn(msg)
    return once


def reachable_max_khz(session: Any, physics: BoardPhysics) -> int:
    """The highest CPU point the kernel lets run now: under an nvpmodel mode's cap (the simulated AGX Orin
    boots in MODE_30W, 1728 MHz of a 2201.6 MHz table), not the table's top."""
    cap = session.controller.cpu_cap_khz()
    opps = session.controller.cpu_opps_khz()
    return max((f for f in opps if cap is None or f <= cap), default=physics.f_max_khz)


def default_deadline_ms(rt: Runtime, bundle: Bundle, physics: BoardPhysics, top_khz: int) -> float:
    """Twice the worst-case path (every block and head) at the highest operating point that can run."""
    cost = PhysicsCostModel(physics, bundle)
    f = top_khz
    worst = sum(cost.segment_ms(s.label, f) for s in bundle.blocks + bundle.exits)
    return round(2.0 * worst, 3)


def default_period_ms(deadline_ms: float, read_ms: float) -> float:
    """The deadline, plus room for the meter probe's own time at a period's edges (``read_ms``) with half again
    as much for its jitter, to 0.1 ms. A run's sampler reads on its own thread, so that is bookkeeping, well under
    1 ms; a sampler that read at the edges (a forked vcgencmd, six I2C reads) made every period of a metered board
    run over without it."""
    if not read_ms:
        return deadline_ms
    return min(round(deadline_ms + math.ceil(read_ms * 1.5 * 10.0) / 10.0, 3), MAX_PERIOD_MS)


def check_default_profile(bundle: Bundle, board: str, simulated: bool, threads: int, physics: BoardPhysics,
                          warn: Optional[Callable[[str], None]] = None) -> None:
    """Load the profile the planned arms will read (the bundle's profiles/<board>[-simulated].json, as
    `edgeexit run` finds it), so that a bad one fails now, in a second, not after the calibration (~40 s).
    Without one, say so where the bundle has one for another thread count (the arms plan from the model)."""
    path = default_profile_path(bundle, board, simulated, threads)
    if not path.is_file():
        note = other_threads_note(bundle, board, simulated, threads)
        if note and warn is not None:
            warn(note)
    else:
        # A simulated board's table is its firmware profile's; a real one's is checked when the arms open it.
        load_profile_json(path, bundle, board, fallback=PhysicsCostModel(physics, bundle), threads=threads,
                          board_khz=list(physics.freqs_khz) if simulated else None, simulated=simulated)


def has_confidence_heads(bundle: Bundle) -> bool:
    return any(e.confidence_output is not None for e in bundle.exits[:-1])


def check_policies(bundle: Bundle, policies: Optional[List[str]]) -> None:
    """An explicitly named policy the bundle cannot run fails now, not after the calibration."""
    if policies is not None and "confidence-head" in policies and not has_confidence_heads(bundle):
        raise PolicyError("bundle {} has no confidence heads, so --policies cannot include confidence-head; leave it "
                          "out, or pass --model a bundle trained with `python -m tools.train --strategy post-trained`"
                          .format(bundle.name))


def _arm_stats(ex: Any) -> Dict[str, Any]:
    s = dict(ex.summary)
    recs = ex.records
    s["exit_histogram"] = list(s.get("exit_histogram", []))
    s["n_heads_mean"] = float(np.mean([len(r["heads"]) for r in recs])) if recs else None
    return s  # the planner's host overhead is in the summary already (execute)


def run_bench(cfg: BenchConfig, progress: Optional[Callable[[str, int, int], None]] = None, warn: Any = None) -> Dict[str, Any]:
    """Run the whole benchmark; returns the results dict (what results.json holds)."""
    cfg = replace(cfg, board_warn=cfg.board_warn or _once(warn_stderr))
    bundle = cfg.bundle if cfg.bundle is not None else load_bundle(cfg.model_path, calibration=False)  # refitted
    check_policies(bundle, cfg.policies)
    evalset = bundle.split("evaluation").take(cfg.limit)
    y = evalset.require_labels("the benchmark")
    # The board and its meter first: a wrong --board or a meter that cannot open fails in a second, not after
    # the calibration. Each arm opens its own fresh session later.
    with _open(cfg) as probe_session:
        simulated = probe_session.simulated
        physics = board_physics(probe_session, cfg.threads)
        top_khz = reachable_max_khz(probe_session, physics)
        board_desc = probe_session.describe()
        board_name = probe_session.board.name  # what --board auto found
        governor = probe_session.profile.cpu.default_governor
        brun = make_probe(probe_session, cfg.threads, meter=cfg.meter)
        try:  # the meter probe's own time at a period's edges needs room in every period, beside the inference
            read_ms = brun.probe.time_edge_reads_ms() if brun.sampler is not None else 0.0
        finally:
            brun.close()
        check_default_profile(bundle, board_name, simulated, cfg.threads, physics, warn)
    with Runtime(bundle, interpreter=cfg.interpreter, num_threads=cfg.threads) as rt:
        # 1. one accuracy target, every policy calibrated to it on the held-out calibration split
        cal = collect(rt, bundle.split("calibration"), keep_block0=True)
        target = target_from(cal, cfg.max_drop_pp, cfg.target_accuracy)
        if target > cal.full_accuracy:  # no policy can reach it: say so before any "calibrating ..." line
            raise CalibrationError("the final exit reaches {:.2%} on the calibration split, below the target {:.2%}; lower "
                                   "the target".format(cal.full_accuracy, target))
        bench_bundle = copy.copy(bundle)
        fitting = None if progress is None else (lambda stage, done, total: progress("calibrating " + stage, 0, 0))
        bench_bundle.calibration = calibrate_all(rt, cal, target, seed=cfg.seed, progress=fitting, policies=cfg.policies)
        table = rt.exit_table(quantize_inputs(evalset.x, bundle.manifest.input), keep_block0=True)
        oracle_targets = earliest_correct(table.pred, y, exit_costs(rt))

        deadline = cfg.deadline_ms or cfg.period_ms or default_deadline_ms(rt, bundle, physics, top_khz)
        period = cfg.period_ms or default_period_ms(deadline, read_ms)
        sensitivity = cfg.sensitivity if cfg.sensitivity is not None else simulated

        wanted = cfg.policies if cfg.policies is not None else POLICY_NAMES
        arms = [a for a in ARMS if a[1] in wanted or a[1] in ("full", "threshold")]
        if not has_confidence_heads(bundle):  # only from the default list: check_policies refused an explicit one
            arms = [a for a in arms if a[1] != "confidence-head"]
        # A policy calibration could not fit at this target is left out, with its reason, not the whole bench.
        not_calibrated = dict(bench_bundle.calibration.get(NOT_CALIBRATED, {}))
        for name, why in not_calibrated.items():
            if warn is not None and any(a[1] == name for a in arms):
                warn("{} is left out of the benchmark: {}".format(name, why))
        arms = [a for a in arms if a[1] not in not_calibrated]
        results: Dict[str, Any] = {}
        records: Dict[str, List[Dict[str, Any]]] = {}
        solves: Dict[str, List[List[Any]]] = {}
        sensitive = sensitivity and simulated and any(a[0] == "predictive@planned" for a in arms)
        total = len(arms) + int(cfg.sweep) + int(sensitive)  # the sweep and the sensitivity runs take long too
        for i, (arm, pol_name, mode) in enumerate(arms):
            if progress is not None:
                progress(arm, i, total)
            # The first arm says what every arm would (an ignored --meter, a deadline no inference can meet)
            ex, planner, pol = _run_arm(cfg, bench_bundle, rt, evalset, pol_name, mode, deadline, period, oracle_targets,
                                        warn=warn if i == 0 else None)
            stats = _arm_stats(ex)
            stats["policy"], stats["dvfs"] = pol_name, mode
            if pol_name == "predictive":
                stats["forecast_metrics_calibration"] = bench_bundle.calibration["predictive"]["forecast_metrics"]
                stats["forecaster_params"] = bench_bundle.calibration["predictive"]["forecaster_params"]
                stats["forecast_eval"] = forecast_eval(bench_bundle, table, rt)
                stats["forecaster_us_mean"] = float(np.mean([r.get("forecast_us", 0.0) for r in ex.records]))
            results[arm] = stats
            records[arm] = ex.records
            if planner is not None and planner.solves:
                # a solve after the last inference planned none of them
                solves[arm] = [[n, moved] for n, moved in planner.solves if n < min(len(ex.records), TIMELINE_INFERENCES)]
        derived = derive(results)
        out: Dict[str, Any] = {
            "schema": "edgeexit-bench/1",
            "simulated": simulated,
            "board": board_name,
            "board_description": board_desc,
            "model": bundle.name,
            "model_path": str(bundle.root),
            "seed": cfg.seed,
            "n_samples": len(evalset),
            "deadline_ms": deadline,
            "deadline_default": not (cfg.deadline_ms or cfg.period_ms),
            "cpu_max_khz": top_khz,  # the highest point that could run: the default deadline's and "at max" figures
            "period_ms": period,
            "meter_read_ms": round(read_ms, 3) if read_ms else None,  # the probe's time at a period's edges, timed before the arms
            "default_governor": governor,
            "threads": cfg.threads,
            "target_accuracy": target,
            "full_accuracy_calibration": cal.full_accuracy,
            "calibration_split": "calibration ({} samples)".format(len(cal.y)),
            "evaluation_split": "evaluation ({} samples)".format(len(evalset)),
            "arms": results,
            "not_calibrated": not_calibrated,
            "derived": derived,
            "software": software_versions(rt),
            "cost_model": results.get("predictive@planned", {}).get("cost_model"),
        }
        pc = out["planner_cost"] = planner_cost(results, records, rt, bench_bundle, evalset, physics, top_khz)
        if pc:
            if simulated:  # a measured board's energy already contains the planner's time
                pc["charged"] = overhead_charged(results, records["predictive@planned"], physics)
            # the median forecast, as the rest of the planner's cost: a mean carries host outliers
            med, share = pc.get("forecast_us_when_forecasting_median"), pc.get("forecast_share_of_inferences")
            pc["entry_forecast"] = entry_forecast_payoff(bench_bundle, table, rt, physics, top_khz,
                                                         None if med is None or share is None else med * share)
        out["forecast_ceiling"] = forecast_ceiling(rt, bench_bundle, table)
        done = len(arms)
        if cfg.sweep:
            if progress is not None:
                progress("accuracy sweep (each policy refitted at {} targets)".format(len(SWEEP_DROPS_PP)), done, total)
            # at the clock race-to-idle reached: a cap (an nvpmodel mode) can hold it under the table's top
            race = records.get("threshold@race") or records.get("full@max") or []
            ran = [int(r["cpu_khz"]) for r in race if r.get("cpu_khz")]
            out["pareto_cpu_khz"] = max(set(ran), key=ran.count) if ran else top_khz
            out["pareto"] = pareto_sweep(rt, cal, table, y, physics, bundle, deadline, period, seed=cfg.seed,
                                         policies=cfg.policies, cpu_khz=out["pareto_cpu_khz"])
            done += 1
        if sensitive:
            if progress is not None:
                progress("sensitivity runs (power model coefficients x0.5 and x1.5)", done, total)
            out["sensitivity"] = sensitivity_study(cfg, bench_bundle, rt, evalset, deadline, period, oracle_targets, physics)
        if progress is not None:
            progress("done", total, total)
        timeline_arms = [a for a in ("predictive@planned", "threshold@race", "threshold@governor") if a in records]
        out["timeline_cpu_khz"] = {arm: [r.get("cpu_khz_trace", []) for r in records[arm][:TIMELINE_INFERENCES]]
                                   for arm in timeline_arms}
        # where the planner solved its future H again (it may move where inferences begin): the timeline marks them
        out["timeline_solves"] = {arm: solves[arm] for arm in timeline_arms if arm in solves}
    return out


def _run_arm(cfg: BenchConfig, bundle: Bundle, rt: Runtime, samples: Any, pol_name: str, mode: str,
             deadline: float, period: float, oracle_targets: np.ndarray, physics: Optional[BoardPhysics] = None,
             warn: Any = None) -> Any:
    extra: Dict[str, Any] = {"targets": oracle_targets} if pol_name == "oracle" else {}
    pol = make_policy(pol_name, bundle, **extra)
    with _open(cfg) as session:
        ex = execute(bundle, rt, pol, samples, session=session, dvfs=mode, deadline_ms=deadline, period_ms=period,
                     threads=cfg.threads, meter=cfg.meter, pass_labels=pol_name == "oracle", physics_override=physics,
                     warn=warn if warn is not None else _silent)  # execute's own default is stderr
    return ex, ex.planner, pol


def _saving(a: Optional[float], b: Optional[float]) -> Optional[float]:
    if a is None or b is None or b == 0:
        return None
    return 1.0 - a / b


def derive(results: Dict[str, Any]) -> Dict[str, Any]:
    """Savings of every arm against full@max, threshold@race and threshold@governor, and distance to oracle."""
    refs = {k: results.get(k) for k in ("full@max", "threshold@race", "threshold@governor", "oracle@planned")}
    out: Dict[str, Any] = {}
    for arm, s in results.items():
        d: Dict[str, Any] = {}
        for ref_name, ref in refs.items():
            if ref is None or ref_name == arm:
                continue
            key = ref_name.replace("@", "_at_").replace("-", "_")
            d["macs_saving_vs_" + key] = _saving(s["mean_macs"], ref["mean_macs"])
            d["energy_saving_vs_" + key] = _saving(s.get("mean_energy_mj"), ref.get("mean_energy_mj"))
            d["energy_period_saving_vs_" + key] = _saving(s.get("mean_energy_period_mj"), ref.get("mean_energy_period_mj"))
        o = refs.get("oracle@planned")
        if o is not None and arm != "oracle@planned":
            d["macs_over_oracle"] = s["mean_macs"] / o["mean_macs"] - 1.0 if o["mean_macs"] else None
            if s.get("mean_energy_period_mj") and o.get("mean_energy_period_mj"):
                d["energy_period_over_oracle"] = s["mean_energy_period_mj"] / o["mean_energy_period_mj"] - 1.0
        out[arm] = d
    return out


def forecast_eval(bundle: Bundle, table: Any, rt: Runtime) -> Dict[str, Any]:
    """How the first forecast (the entry forecast where the policy has one, else the one at the first
    enabled head) compares, on the evaluation samples, with where the thresholds say the sample can
    exit (the forecaster's training target). Records keep only the last forecast, so the policy is
    replayed over the exit table (the same decisions, a test checks it)."""
    pol = make_policy("predictive", bundle)
    r = replay(rt, pol, table)
    th = np.asarray(pol.thresholds)
    passes = table.max_softmax >= th
    passes[:, -1] = True
    truth = np.argmax(passes, axis=1)
    need = np.ones(len(truth), dtype=bool) if pol.entry is not None else truth > pol.first
    asked = need & (r.planned >= 0)
    if not asked.any():
        return {"n_forecasts": 0}
    p, t = r.planned[asked], truth[asked]
    return {"n_forecasts": int(asked.sum()), "exact_hit_rate": float((p == t).mean()),
            "within_one_rate": float((np.abs(p - t) <= 1).mean()),
            "over_prediction_rate": float((p > t).mean()), "under_prediction_rate": float((p < t).mean())}


def forecast_ceiling(rt: Runtime, bundle: Bundle, table: Any) -> Dict[str, float]:
    """MACs saving over threshold that a *perfect* forecaster would reach on these samples: it would
    jump straight to the exit the thresholds pick, skipping every head before it (the first enabled
    head too, with an entry forecast; ``..._after_first_head`` keeps that head)."""
    th = np.asarray(bundle.calibration["threshold"]["thresholds"])
    passes = table.max_softmax >= th
    passes[:, -1] = True
    t = np.argmax(passes, axis=1)
    enabled = np.asarray(enabled_exits(list(th)))
    first = int(np.argmax(enabled))
    m, h = np.asarray(rt.macs_to_exit), np.asarray(rt.head_macs)
    thr = threshold_cost(t, m, h, enabled)
    perfect = m[t] + h[t]
    after_first = np.where(t > first, perfect + h[first], perfect)
    return {"threshold_mean_macs": float(thr.mean()), "perfect_forecast_mean_macs": float(perfect.mean()),
            "macs_saving_ceiling": float(1.0 - perfect.mean() / thr.mean()),
            "macs_saving_ceiling_after_first_head": float(1.0 - after_first.mean() / thr.mean())}


def planner_cost(results: Dict[str, Any], records: Dict[str, Any], rt: Runtime, bundle: Bundle, samples: Any,
                 physics: BoardPhysics, top_khz: int) -> Dict[str, Any]:
    """The planner's own cost per inference (forecaster + planning + controller bookkeeping, host time)
    against block 0's latency (host invoke, and modelled on the board)."""
    pred = results.get("predictive@planned")
    if pred is None:
        return {}
    block0 = [r["host_segments_ms"].get("block0") for r in records["predictive@planned"]
              if "block0" in r["host_segments_ms"]]
    host_block0_ms = float(np.median(block0)) if block0 else None
    per_inf_us = (pred.get("planner_us_mean") or 0.0) + (pred.get("forecaster_us_mean") or 0.0)
    median_us = pred.get("overhead_us_median")
    fus = [r.get("forecast_us", 0.0) for r in records["predictive@planned"]]
    board_block0_ms = physics.segment_s(bundle.blocks[0].macs, top_khz) * 1e3
    return {
        "planner_us_per_inference": pred.get("planner_us_mean"),
        "planner_us_median": pred.get("planner_us_median"),
        "forecast_us_when_forecasting_median": float(np.median([f for f in fus if f > 0])) if any(f > 0 for f in fus) else None,
        "forecast_share_of_inferences": float(np.mean([f > 0 for f in fus])) if fus else None,
        "forecaster_us_per_inference": pred.get("forecaster_us_mean"),
        "total_us_per_inference": per_inf_us,
        "total_us_median": median_us,
        "block0_host_invoke_ms": host_block0_ms,
        "block0_board_model_ms_at_max": board_block0_ms,
        "fraction_of_block0_host": median_us / 1e3 / host_block0_ms if host_block0_ms and median_us is not None else None,
        "fraction_of_block0_board": median_us / 1e3 / board_block0_ms if board_block0_ms and median_us is not None else None,
        "note": "host time of the Python planner on this machine; fractions use the median inference (the mean also "
                "carries the rare sysfs writes, the first with its fsync'd state-file update); block 0 on the board "
                "from the board model",
    }


def overhead_charged(results: Dict[str, Any], records: List[Dict[str, Any]], physics: BoardPhysics) -> Dict[str, Any]:
    """predictive@planned's energy with the planner's own host time charged, which the board model leaves
    out: the median inference's overhead (planning + forecasting) at busy power, at the operating point
    each inference started at; per period it displaces idle time, so it costs busy minus idle power.
    Host speed: on a slower board CPU the charge would be larger, so these savings are upper bounds."""
    pred = results["predictive@planned"]
    us = pred.get("overhead_us_median")
    if not us or not records:
        return {}
    busy = float(np.mean([physics.power(int(r["cpu_khz"]), True).total_mw for r in records]))
    idle = float(np.mean([physics.idle_mw(int(r.get("idle_cpu_khz", r["cpu_khz"]))) for r in records]))
    per_inf = (pred.get("mean_energy_mj") or 0.0) + busy * us / 1e6
    per_period = (pred.get("mean_energy_period_mj") or 0.0) + (busy - idle) * us / 1e6
    out: Dict[str, Any] = {"overhead_us": us, "energy_mj": per_inf, "energy_period_mj": per_period}
    for arm, key in (("threshold@race", "race"), ("threshold@governor", "governor")):
        base = results.get(arm, {})
        out["energy_saving_vs_threshold_at_" + key] = _saving(per_inf, base.get("mean_energy_mj"))
        out["energy_period_saving_vs_threshold_at_" + key] = _saving(per_period, base.get("mean_energy_period_mj"))
    return out


def entry_forecast_payoff(bundle: Bundle, table: Any, rt: Runtime, physics: BoardPhysics, top_khz: int,
                          forecaster_us: Optional[float]) -> Dict[str, Any]:
    """What the entry forecast buys per inference -- MACs, and modelled board time at the maximum clock
    (segments not run, invoke overheads included) -- against what the forecasters cost on this host.
    The policy is replayed over the evaluation exit table with and without its entry forecaster."""
    from edgeexit.policies.predictive import PredictivePolicy

    with_entry = make_policy("predictive", bundle)
    if with_entry.entry is None:
        return {"used": False}
    without = PredictivePolicy(with_entry.forecaster, with_entry.thresholds, with_entry.on_miss, with_entry.risk,
                               with_entry.table, entry_exit=with_entry.entry_exit)  # the head MLP reads that block
    f = top_khz
    block_s = [physics.segment_s(b.spec.macs, f) for b in rt.blocks]
    head_s = [physics.segment_s(h.spec.macs, f) for h in rt.exits]

    def modelled_us(r: Any) -> float:
        return float(per_sample_cost(rt.exit_blocks, r.exits, r.heads, block_s, head_s).mean()) * 1e6

    a, b = replay(rt, with_entry, table), replay(rt, without, table)
    saved_us = modelled_us(b) - modelled_us(a)
    return {"used": True, "macs_saved_per_inference": float(b.macs.mean() - a.macs.mean()),
            "board_us_saved_at_max": saved_us, "forecaster_host_us_per_inference": forecaster_us,
            "note": "board time saved is modelled (segments skipped at the maximum clock); forecaster cost is host time, "
                    "which a board CPU several times slower than this host multiplies"}


def pareto_sweep(rt: Runtime, cal: Any, table: Any, y: np.ndarray, physics: BoardPhysics, bundle: Bundle,
                 deadline: float, period: float, seed: int = 0,
                 policies: Optional[List[str]] = None, cpu_khz: Optional[int] = None) -> Dict[str, List[Dict[str, float]]]:
    """Accuracy against modelled energy per inference as the accuracy target sweeps, per policy (threshold,
    and predictive and eenet where ``policies`` has them; None: both).

    Each point recalibrates the policy on the calibration split and replays it on the evaluation exit
    table; energy per inference is the board model's energy of the segments it ran at ``cpu_khz`` (default: the
    maximum operating point; the bench passes the clock race-to-idle reached) -- the same accounting for every
    policy, so fronts compare.
    """
    from edgeexit.calibration import calibrate_threshold
    from edgeexit.policies.eenet import EENetPolicy
    from edgeexit.policies.predictive import PredictivePolicy
    from edgeexit.policies.simple import ThresholdPolicy
    from edgeexit.policy_calibration import calibrate_eenet, calibrate_predictive

    cost = PhysicsCostModel(physics, bundle)
    f = cpu_khz or physics.f_max_khz
    busy = cost.busy_mw(f)
    seg_mj = {s.label: cost.segment_ms(s.label, f) * busy / 1e3 for s in bundle.blocks + bundle.exits}

    block_mj = [seg_mj[s.label] for s in bundle.blocks]
    head_mj = [seg_mj[s.label] for s in bundle.exits]

    def energy(heads: List[List[int]], exits: np.ndarray) -> float:
        return float(per_sample_cost(rt.exit_blocks, exits, heads, block_mj, head_mj).mean())

    swept = [n for n in ("predictive", "eenet") if policies is None or n in policies]
    out: Dict[str, List[Dict[str, float]]] = {n: [] for n in ["threshold"] + swept}
    for drop_pp in SWEEP_DROPS_PP:
        tgt = cal.full_accuracy - drop_pp / 100.0
        try:
            thr = calibrate_threshold(cal, tgt)
            pols = {"threshold": ThresholdPolicy(thr.thresholds)}
            if "predictive" in swept:
                p = calibrate_predictive(rt, cal, thr.thresholds, tgt, seed=seed)
                pols["predictive"] = PredictivePolicy.from_calibration({"predictive": p}, len(rt.exits))  # as it runs
            if "eenet" in swept:
                e = calibrate_eenet(rt, cal, tgt, seed=seed)
                pols["eenet"] = EENetPolicy.from_calibration({"eenet": e}, len(rt.exits))  # with its start exit
        except EdgeExitError:
            continue
        for name, pol in pols.items():
            r = replay(rt, pol, table, y)
            out[name].append({"target_drop_pp": drop_pp, "accuracy": r.accuracy(y), "mean_macs": float(r.macs.mean()),
                              "energy_mj": energy(r.heads, r.exits)})
    full_e = energy([[len(rt.exits) - 1]] * len(y), np.full(len(y), len(rt.exits) - 1))
    out["full"] = [{"target_drop_pp": 0.0, "accuracy": float((table.pred[:, -1] == y).mean()),
                    "mean_macs": float(rt.full_macs), "energy_mj": full_e}]
    return out


def sensitivity_study(cfg: BenchConfig, bundle: Bundle, rt: Runtime, samples: Any, deadline: float, period: float,
                      oracle_targets: np.ndarray, physics: BoardPhysics) -> List[Dict[str, Any]]:
    """Headline savings (predictive vs threshold at race-to-idle and under the governor) when the board
    model's static and dynamic power coefficients are each scaled by 0.5 and 1.5."""
    import dataclasses

    rows = []
    base = physics.profile
    variants = [("static", 0.5), ("static", 1.5), ("dynamic", 0.5), ("dynamic", 1.5)]
    for part, factor in variants:
        pm = base.power_model
        if part == "static":
            pm2 = dataclasses.replace(pm, idle_board_mw=pm.idle_board_mw * factor, cpu_static_mw=pm.cpu_static_mw * factor,
                                      mem_active_mw=pm.mem_active_mw * factor,
                                      gpu_static_mw=None if pm.gpu_static_mw is None else pm.gpu_static_mw * factor)
        else:
            pm2 = dataclasses.replace(pm, cpu_ceff_pf=pm.cpu_ceff_pf * factor,
                                      gpu_ceff_pf=None if pm.gpu_ceff_pf is None else pm.gpu_ceff_pf * factor)
        ph = BoardPhysics(dataclasses.replace(base, power_model=pm2), threads=cfg.threads, cores=physics.cores)
        res = {}
        for arm, pol, mode in (("predictive@planned", "predictive", "planned"), ("threshold@race", "threshold", "race"),
                               ("threshold@governor", "threshold", "governor")):
            ex, _, _ = _run_arm(cfg, bundle, rt, samples, pol, mode, deadline, period, oracle_targets, physics=ph)
            res[arm] = ex.summary
        p, r, g = res["predictive@planned"], res["threshold@race"], res["threshold@governor"]
        rows.append({
            "coefficients": part, "factor": factor,
            "energy_saving_vs_threshold_at_race": _saving(p.get("mean_energy_mj"), r.get("mean_energy_mj")),
            "energy_saving_vs_threshold_at_governor": _saving(p.get("mean_energy_mj"), g.get("mean_energy_mj")),
            "energy_period_saving_vs_threshold_at_race": _saving(p.get("mean_energy_period_mj"), r.get("mean_energy_period_mj")),
            "energy_period_saving_vs_threshold_at_governor": _saving(p.get("mean_energy_period_mj"), g.get("mean_energy_period_mj")),
        })
    return rows


def software_versions(rt: Runtime) -> Dict[str, str]:
    import numpy

    return {"edgeexit": __version__, "python": sys.version.split()[0], "numpy": numpy.__version__,
            "interpreter": "{} {}".format(rt.backend.name, rt.backend.version), "platform": platform.platform()}
