"""report.md from results.json: our figures beside the paper's headline claims, with conditions."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from edgeexit.bench.plots import TIMELINE_SHOWN

PAPER = "Predictive Exit (Li et al., AAAI 2023, arXiv 2206.04685)"


def pct(v: Optional[float]) -> str:
    return "-" if v is None else "{:+.1f}%".format(100 * v) if v < 0 else "{:.1f}%".format(100 * v)


def num(v: Optional[float], fmt: str = "{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def max_clock(res: Dict[str, Any]) -> str:
    """The clock the default deadline and the "at the maximum" figures are at: the highest that could run."""
    khz = res.get("cpu_max_khz")
    return "the highest clock that could run, {:g} MHz".format(khz / 1000.0) if khz else "the maximum clock"


def in_arm_order(arms: Dict[str, Any]) -> List[str]:
    """The bench's own arm order (references first), whatever order a results.json read back has."""
    from edgeexit.bench.core import ARMS

    order = [name for name, _, _ in ARMS]
    return sorted(arms, key=lambda a: (order.index(a) if a in order else len(order), a))


PLOT_CAPTIONS = {
    "pareto.png": "Accuracy against energy per inference as each policy's accuracy target sweeps, every policy charged at "
                  "{pareto_mhz} (race-to-idle accounting, board model), so the fronts compare exit policies, not DVFS: "
                  "predictive@planned's own energy, at the clocks its planner picked, is in the tables above. Lines join "
                  "each policy's non-dominated points. A single point far costlier than the rest (`full`) is drawn on the "
                  "right spine, labelled with its energy, so it does not squeeze the fronts.",
    "exit_histogram.png": "Samples per exit on the evaluation split, log scale (an empty slot is zero samples).",
    "timeline.png": "The CPU clock each segment of the first {shown} inferences ran at, per arm shown.{solves}",
}


def _caption_values(res: Dict[str, Any]) -> Dict[str, str]:
    khz = res.get("pareto_cpu_khz")
    marked = any(n < TIMELINE_SHOWN for solves in (res.get("timeline_solves") or {}).values() for n, _ in solves)
    return {"pareto_mhz": "{:g} MHz".format(khz / 1000.0) if khz else "the maximum clock", "shown": str(TIMELINE_SHOWN),
            "solves": " Red lines mark where the planner solved its model of the inferences to come again, on its "
                      "schedule, from the outcomes seen so far: solid where that moved the clock inferences begin at, "
                      "dotted where it did not." if marked else ""}


def _goal(fraction: Any) -> str:
    if not isinstance(fraction, (int, float)):
        return "not measured"
    return "met" if fraction < 0.02 else "missed"


def arms_table(res: Dict[str, Any]) -> str:
    rows = ["| arm | accuracy | mean MACs | MAC reduction vs full | latency mean / p99 (ms) | deadline misses | energy / inference (mJ) "
            "| energy / period (mJ) | sysfs writes (per inference) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for arm in in_arm_order(res["arms"]):
        s = res["arms"][arm]
        rows.append("| {} | {} | {} | {} | {} / {} | {} | {} | {} | {} |".format(
            arm, num(s.get("accuracy"), "{:.2%}"), num(s.get("mean_macs"), "{:,.0f}"), pct(s.get("macs_reduction_vs_full")),
            num(s.get("mean_latency_ms")), num(s.get("p99_latency_ms")), num(s.get("deadline_miss_rate"), "{:.1%}"),
            num(s.get("mean_energy_mj")), num(s.get("mean_energy_period_mj")),
            "{} ({})".format(num(s.get("sysfs_writes"), "{:d}"), num(s.get("sysfs_writes_per_inference"), "{:.3f}"))))
    return "\n".join(rows)


def known_note(res: Dict[str, Any]) -> List[str]:
    """A line naming the arms whose energy is known for only some inferences (a polled meter prices them once one
    of its reads has fallen inside an inference), or nothing."""
    part = ["{} {} of {}".format(arm, s["energy_known"], res["n_samples"])
            for arm, s in ((a, res["arms"][a]) for a in in_arm_order(res["arms"])) if s.get("energy_known") is not None]
    if not part:
        return []
    return ["**Energy known** for only some inferences: {}. A polled meter reads every few ms; an inference's "
            "energy is known once the reads give the busy power (a read inside an inference; with an INA3221's "
            "conversion lag fitted, 20 reads and a standard error within 5%, about a second into a run), and the "
            "means are over those inferences.".format("; ".join(part)), ""]


def nominal_period_mj(s: Dict[str, Any], period_ms: float) -> Optional[float]:
    """An arm's energy per nominal period at its average power: where its periods ran over, its energy per period
    covers longer ones. None where unknown."""
    e, actual = s.get("mean_energy_period_mj"), s.get("mean_period_actual_ms")
    return e * period_ms / actual if e is not None and actual else None


def overrun_note(res: Dict[str, Any]) -> List[str]:
    """A paragraph naming the arms whose periods ran over (an inference, with the meter probe's time on a board, longer
    than the period), or nothing: their energy per period covers periods longer than the nominal one."""
    over = [(arm, s) for arm, s in ((a, res["arms"][a]) for a in in_arm_order(res["arms"]))
            if s.get("period_overrun_rate")]
    if not over:
        return []
    period = res["period_ms"]
    ours = res["arms"].get("predictive@planned", {}).get("mean_energy_period_mj")
    parts = []
    for arm, s in over:
        text = "{} in {} of them (mean {} ms)".format(arm, num(s["period_overrun_rate"], "{:.1%}"),
                                                      num(s.get("mean_period_actual_ms"), "{:.2f}"))
        nominal = nominal_period_mj(s, period)
        if nominal is not None:
            text += ", {} mJ per nominal period at its average power".format(num(nominal))
            if ours is not None and arm != "predictive@planned":
                text += " (predictive@planned saves {} against that)".format(pct(1 - ours / nominal))
        parts.append(text)
    reads = res.get("meter_read_ms")
    return ["**Periods ran over** the nominal {} ms: {}. An inference that overruns delays the next, so energy per "
            "period there is an inference with the idle after it over a longer period: it compares per inference, not "
            "per unit of time. Run again with a --period-ms that holds the inference{} where the arm should fit it."
            .format(period, "; ".join(parts),
                    " and the meter probe's own time (about {:.1f} ms)".format(reads) if reads else ""), ""]


def _period_vs(res: Dict[str, Any], arm: str, saving: Any) -> str:
    """The per-period saving against ``arm``, with the one per nominal period where that arm's periods ran over
    (a longer period holds more idle energy, which flatters the saving)."""
    text = "{} per period".format(pct(saving))
    ref, ours = res["arms"].get(arm, {}), res["arms"].get("predictive@planned", {}).get("mean_energy_period_mj")
    nominal = nominal_period_mj(ref, res["period_ms"])
    if ref.get("period_overrun_rate") and nominal and ours is not None:
        text += " ({} ran over {} of its periods; {} per nominal period)".format(
            arm, num(ref["period_overrun_rate"], "{:.1%}"), pct(1 - ours / nominal))
    return text


def headline_rows(res: Dict[str, Any]) -> List[str]:
    d = res["derived"].get("predictive@planned", {})
    return [
        "| claim | paper ({}) | edgeexit (this run) |".format(PAPER.split(" (")[0]),
        "|---|---|---|",
        "| computation reduction vs classic early exit | 12.8% | {} (predictive vs threshold, same accuracy target) |".format(
            pct(d.get("macs_saving_vs_threshold_at_race"))),
        "| energy saving vs classic early exit | 37.6% | {} per inference, {} vs threshold@race; {} per inference, "
        "{} vs threshold@governor |".format(
            pct(d.get("energy_saving_vs_threshold_at_race")),
            _period_vs(res, "threshold@race", d.get("energy_period_saving_vs_threshold_at_race")),
            pct(d.get("energy_saving_vs_threshold_at_governor")),
            _period_vs(res, "threshold@governor", d.get("energy_period_saving_vs_threshold_at_governor"))),
        "| computation reduction vs the network without exits | up to 96.2% | {} (predictive vs full) |".format(
            pct(d.get("macs_saving_vs_full_at_max"))),
        "| energy saving vs the network without exits | up to 72.9% | {} per inference, {} per period (predictive vs full@max) |".format(
            pct(d.get("energy_saving_vs_full_at_max")), pct(d.get("energy_period_saving_vs_full_at_max"))),
    ]


def render(res: Dict[str, Any], plots: List[str]) -> str:
    sim = res["simulated"]
    lines = ["# edgeexit bench: {} on {}".format(res["model"], res["board"]), ""]
    if sim:
        lines += ["**SIMULATED board.** Latency and energy come from the board model (firmware_profiles/), not from a "
                  "measurement; see the sensitivity table for how much the savings depend on its coefficients.", ""]
    lines += [
        "Conditions: {} evaluation samples; every policy calibrated on the calibration split (held out from training) to "
        "accuracy >= {:.2%} there (final exit on that split: {:.2%}; the evaluation split is not the one the targets were "
        "fitted on, so its accuracies below come out lower); deadline {} ms{}, period {} ms{}; {} interpreter thread{}; "
        "seed {}; board default "
        "governor {}; {}; the planner's cost model: {}.".format(
            res["n_samples"], res["target_accuracy"], res["full_accuracy_calibration"], res["deadline_ms"],
            " (by default twice the path through every block and head at {})".format(max_clock(res)) if res.get("deadline_default")
            else "", res["period_ms"], " (with room for up to {:.2f} ms of the meter probe's own time at each period's edges)".format(res["meter_read_ms"])
            if res.get("meter_read_ms") else "", res["threads"], "" if res["threads"] == 1 else "s", res["seed"], res["default_governor"],
            res["software"]["interpreter"], res.get("cost_model") or "-"),
        "",
        "## Paper's headline figures beside ours",
        "",
    ] + headline_rows(res) + [
        "",
        "The paper's figures are from its abstract (its models, datasets and platform; per-table conditions are not "
        "public). Ours: the bundle {} on the {} {}, energy per inference = board energy while inferring; energy per "
        "period = that plus idle until the next period.".format(res["model"], "simulated" if sim else "real", res["board"]),
        "",
        "## Every arm",
        "",
        arms_table(res),
        "",
    ] + overrun_note(res) + known_note(res)
    d = res["derived"]
    lines += ["## Savings", "", "A saving is positive where the arm spends less than the arm it is compared with, negative where "
              "it spends more; MACs over oracle: how many more MACs the arm runs than the oracle.", "",
              "| arm | MAC saving vs threshold | energy/inference saving vs full@max | vs threshold@race | vs threshold@governor "
              "| energy/period saving vs threshold@race | vs threshold@governor | MACs over oracle |", "|---|---|---|---|---|---|---|---|"]
    for arm in in_arm_order(d):
        x = d[arm]
        lines.append("| {} | {} | {} | {} | {} | {} | {} | {} |".format(
            arm, pct(x.get("macs_saving_vs_threshold_at_race")), pct(x.get("energy_saving_vs_full_at_max")),
            pct(x.get("energy_saving_vs_threshold_at_race")), pct(x.get("energy_saving_vs_threshold_at_governor")),
            pct(x.get("energy_period_saving_vs_threshold_at_race")), pct(x.get("energy_period_saving_vs_threshold_at_governor")),
            pct(x.get("macs_over_oracle"))))
    pred = res["arms"].get("predictive@planned")
    if pred:
        fe = pred.get("forecast_eval", {})
        fc = pred.get("forecast_metrics_calibration", {})
        lines += ["", "## Forecaster", "",
                  "{} parameters. On the evaluation samples that needed a forecast ({}): exact hit {}, within one exit {}, "
                  "over-predicted {}, under-predicted {}. On the calibration split, forecast out of fold (each sample by "
                  "forecasters not fitted on it; {} forecasts): exact hit {}, within one {}; an over-prediction cost {} extra MACs on average, an under-prediction {}.".format(
                      pred.get("forecaster_params"), fe.get("n_forecasts"), num(fe.get("exact_hit_rate"), "{:.1%}"),
                      num(fe.get("within_one_rate"), "{:.1%}"), num(fe.get("over_prediction_rate"), "{:.1%}"),
                      num(fe.get("under_prediction_rate"), "{:.1%}"), fc.get("n_forecasts"), num(fc.get("exact_hit_rate"), "{:.1%}"),
                      num(fc.get("within_one_rate"), "{:.1%}"), num(fc.get("over_prediction_cost_macs"), "{:,.0f}"),
                      num(fc.get("under_prediction_cost_macs"), "{:,.0f}"))]
    fc_ceiling = res.get("forecast_ceiling") or {}
    if fc_ceiling:
        lines += ["", "A perfect forecaster (jumping from the first block straight to the exit the thresholds pick) would save "
                  "{} of threshold's MACs on these samples ({} if the first enabled head always runs): the ceiling for skipping "
                  "heads on this model.".format(pct(fc_ceiling.get("macs_saving_ceiling")),
                                                pct(fc_ceiling.get("macs_saving_ceiling_after_first_head")))]
    pc = res.get("planner_cost") or {}
    if pc:
        lines += ["", "## Planner cost", "",
                  "Forecaster + planning + controller bookkeeping: {} us for the median inference on this host, {} us on average "
                  "(planner {} us mean, "
                  "{} us median -- the mean carries the rare sysfs writes, the first with its fsync'd state-file update; forecaster {} us "
                  "averaged over all inferences, {} us when it runs, which is on {} of them); "
                  "block 0 takes {} ms on this host (the median inference's overhead is {} of it) and {} ms on the modelled board "
                  "at {} ({} of it). Goal: under 2% of block 0, {} here. On a simulated board the model does not "
                  "charge this time: the arms' latency and energy leave it out (on a board it runs on the same CPU, at busy "
                  "power).".format(
                      num(pc.get("total_us_median"), "{:.1f}"),
                      num(pc.get("total_us_per_inference"), "{:.1f}"), num(pc.get("planner_us_per_inference"), "{:.1f}"),
                      num(pc.get("planner_us_median"), "{:.1f}"), num(pc.get("forecaster_us_per_inference"), "{:.1f}"),
                      num(pc.get("forecast_us_when_forecasting_median"), "{:.1f}"), num(pc.get("forecast_share_of_inferences"), "{:.1%}"),
                      num(pc.get("block0_host_invoke_ms"), "{:.4f}"),
                      num(pc.get("fraction_of_block0_host"), "{:.1%}"), num(pc.get("block0_board_model_ms_at_max"), "{:.4f}"),
                      max_clock(res), num(pc.get("fraction_of_block0_board"), "{:.1%}"),
                      _goal(pc.get("fraction_of_block0_board")))]
        ch = pc.get("charged") or {}
        if ch:
            lines += ["", "Charging that median overhead ({} us, at host speed) to predictive@planned at busy power, its energy saving "
                      "per period becomes {} against threshold@race and {} against threshold@governor (per inference: {} and {}). "
                      "A board CPU slower than this host would charge more.".format(
                          num(ch.get("overhead_us"), "{:.1f}"),
                          pct(ch.get("energy_period_saving_vs_threshold_at_race")), pct(ch.get("energy_period_saving_vs_threshold_at_governor")),
                          pct(ch.get("energy_saving_vs_threshold_at_race")), pct(ch.get("energy_saving_vs_threshold_at_governor")))]
        ef = pc.get("entry_forecast") or {}
        if ef.get("used"):
            lines += ["", "The entry forecast saves {} MACs and {} us of modelled board time per inference (at {}); "
                      "the forecasters cost {} us per inference of host time (the median forecast, times the share of inferences "
                      "that forecast). Where the board's CPU runs the forecast slower than "
                      "the time it saves, it does not pay in time or energy, only in MACs.".format(
                          num(ef.get("macs_saved_per_inference"), "{:,.0f}"), num(ef.get("board_us_saved_at_max"), "{:.1f}"),
                          max_clock(res),
                          num(ef.get("forecaster_host_us_per_inference"), "{:.1f}"))]
    if res.get("sensitivity"):
        lines += ["", "## Sensitivity to the power model (simulated board)", "",
                  "| coefficients | factor | energy/inference saving vs threshold@race | vs threshold@governor | energy/period vs threshold@race | vs threshold@governor |",
                  "|---|---|---|---|---|---|"]
        for r in res["sensitivity"]:
            lines.append("| {} | {} | {} | {} | {} | {} |".format(
                r["coefficients"], r["factor"], pct(r["energy_saving_vs_threshold_at_race"]), pct(r["energy_saving_vs_threshold_at_governor"]),
                pct(r["energy_period_saving_vs_threshold_at_race"]), pct(r["energy_period_saving_vs_threshold_at_governor"])))
        lines += ["", "static = idle board, CPU leakage and memory power; dynamic = the CPU's switched capacitance."]
    if plots:
        lines += ["", "## Plots", ""]
        for p in plots:
            lines += ["![{}]({})".format(p, p), "", PLOT_CAPTIONS.get(p, "").format(**_caption_values(res)), ""]
    else:
        lines += ["", "(No plots: matplotlib is not installed; `pip install matplotlib`, the [plot] extra.)"]
    return "\n".join(lines) + "\n"
