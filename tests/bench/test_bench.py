"""`edgeexit bench` end to end on simulated boards: outputs exist and agree with each other, and a
simulated bench is deterministic for a seed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.helpers import edgeexit, json_out

HOST_KEYS = {"planner_us_mean", "planner_us_median", "forecaster_us_mean", "forecast_us_median", "overhead_us_median", "interpreter", "model", "board_description",
             "cost_model"}


def _bench(out: Path, board: str = "jetson-nano", *extra: str):
    return json_out(edgeexit("bench", "--board", board, "--simulate", "--limit", "200", "--out", str(out), "--json", *extra))


@pytest.fixture(scope="module")
def nano(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-nano")
    return out, _bench(out, "jetson-nano", "--no-sensitivity")


def test_outputs_exist_and_agree(nano):
    out, summary = nano
    res = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert res["simulated"] is True and "SIMULATED" in report
    assert "Ours: the bundle {} on the simulated jetson-nano".format(res["model"]) in report  # not always "the demo"
    assert summary["simulated"] is True
    for name in ("pareto.png", "exit_histogram.png", "timeline.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert "]({})".format(name) in report
    for arm, s in res["arms"].items():
        assert summary["arms"][arm]["mean_macs"] == s["mean_macs"]
        assert summary["arms"][arm]["mean_energy_period_mj"] == s["mean_energy_period_mj"]
        # --json says where an arm's energy per period covers longer periods than the nominal one
        assert summary["arms"][arm]["period_overrun_rate"] == s["period_overrun_rate"]
        assert summary["arms"][arm]["mean_period_actual_ms"] == s["mean_period_actual_ms"]
        # the report's table shows the same accuracy and energy per period
        row = next(line for line in report.splitlines() if line.startswith("| {} |".format(arm)))
        assert "{:.2%}".format(s["accuracy"]) in row
        assert "{:.3f}".format(s["mean_energy_period_mj"]) in row
    d = res["derived"]["predictive@planned"]
    p, r = res["arms"]["predictive@planned"], res["arms"]["threshold@race"]
    assert d["energy_period_saving_vs_threshold_at_race"] == pytest.approx(1 - p["mean_energy_period_mj"] / r["mean_energy_period_mj"])
    for key in ("seed", "board", "model", "software", "deadline_ms", "period_ms", "target_accuracy"):
        assert key in res
    # the CPU clock traces say their unit (audit defect: the key was a bare "timeline")
    tl = res["timeline_cpu_khz"]
    assert "timeline" not in res and set(tl) == {"predictive@planned", "threshold@race", "threshold@governor"}
    assert all(1e4 < f < 1e7 for traces in tl.values() for tr in traces for f in tr)  # kHz, not MHz or Hz
    # the planner's re-solves within the traces, for the timeline's marks; only predictive's planner solves
    solves = res["timeline_solves"]
    assert set(solves) == {"predictive@planned"} and solves["predictive@planned"]
    assert all(0 < n < len(tl["predictive@planned"]) and isinstance(moved, bool) for n, moved in solves["predictive@planned"])


def test_pareto_replays_the_policies_as_they_run(nano):
    """The sweep's point at the bench's own target (0.25 pp) is each arm's policy replayed: the same MACs
    and accuracy. Predictive's used to be its head MLP alone, without the table and entry tree that run."""
    out, _ = nano
    res = json.loads((out / "results.json").read_text())
    for pol, arm in (("predictive", "predictive@planned"), ("threshold", "threshold@race"), ("eenet", "eenet@race")):
        point = next(p for p in res["pareto"][pol] if p["target_drop_pp"] == 0.25)
        assert point["mean_macs"] == pytest.approx(res["arms"][arm]["mean_macs"]), pol
        assert point["accuracy"] == pytest.approx(res["arms"][arm]["accuracy"]), pol


def test_report_redrawn_from_results_json_is_the_same(nano):
    """results.json is written with sorted keys; a report rendered from it keeps the bench's arm order."""
    from edgeexit.bench.report import render

    out, _ = nano
    res = json.loads((out / "results.json").read_text())
    for key in ("arms", "derived"):
        res[key] = dict(reversed(list(res[key].items())))
    assert render(res, res["plots"]) == (out / "report.md").read_text()
    rows = [line.split(" | ")[0][2:] for line in (out / "report.md").read_text().splitlines() if line.startswith("| full@max")
            or line.startswith("| oracle@planned")]
    assert rows[:2] == ["full@max", "oracle@planned"]  # the references first, the lower bound last


def test_every_policy_reported_with_its_figures(nano):
    _, summary = nano
    arms = summary["arms"]
    for arm in ("full@max", "threshold@race", "threshold@governor", "predictive@planned", "pe-heuristic@planned",
                "eenet@race", "oracle@planned"):
        assert arm in arms
        for key in ("accuracy", "mean_macs", "mean_latency_ms", "p99_latency_ms", "deadline_miss_rate", "mean_energy_mj",
                    "mean_energy_period_mj", "sysfs_writes_per_inference"):
            assert arms[arm][key] is not None, (arm, key)


def test_planner_cost_reported(nano):
    """The planner's own cost (forecaster + planning + bookkeeping) is measured per inference and set
    against block 0; what the entry forecast saves is set against what it costs."""
    out, _ = nano
    res = json.loads((out / "results.json").read_text())
    pc = res["planner_cost"]
    assert pc["total_us_median"] > 0 and pc["planner_us_median"] > 0 and pc["forecaster_us_per_inference"] > 0
    assert pc["fraction_of_block0_host"] == pytest.approx(pc["total_us_median"] / 1e3 / pc["block0_host_invoke_ms"])
    assert pc["fraction_of_block0_board"] == pytest.approx(pc["total_us_median"] / 1e3 / pc["block0_board_model_ms_at_max"])
    ef = pc["entry_forecast"]
    assert ef["used"], "the demo's calibration uses its entry forecast"
    assert ef["macs_saved_per_inference"] != 0 and ef["board_us_saved_at_max"] != 0  # measured: either sign
    # on a simulated board the model leaves that host time out; charged, it can only lower the savings
    ch, d = pc["charged"], res["derived"]["predictive@planned"]
    for key in ("energy_period_saving_vs_threshold_at_race", "energy_period_saving_vs_threshold_at_governor",
                "energy_saving_vs_threshold_at_race", "energy_saving_vs_threshold_at_governor"):
        assert ch[key] < d[key]
    assert "## Planner cost" in (out / "report.md").read_text()


def _strip(res):
    arms = {a: {k: v for k, v in s.items() if k not in HOST_KEYS} for a, s in res["arms"].items()}
    for s in arms.values():
        s.pop("forecast_metrics_calibration", None)
    return arms


def test_deterministic_for_a_seed(tmp_path):
    a = _bench(tmp_path / "a", "jetson-nano", "--no-sensitivity", "--no-sweep")
    b = _bench(tmp_path / "b", "jetson-nano", "--no-sensitivity", "--no-sweep")
    ra = json.loads((tmp_path / "a" / "results.json").read_text())
    rb = json.loads((tmp_path / "b" / "results.json").read_text())
    assert _strip(ra) == _strip(rb)
    assert a["arms"] == b["arms"]


def test_raspberry_pi_5_with_sensitivity(tmp_path):
    p = edgeexit("bench", "--board", "raspberry-pi-5", "--simulate", "--limit", "200", "--out", str(tmp_path), "--json",
                 "--no-sweep")
    s = json_out(p)
    res = json.loads((tmp_path / "results.json").read_text())
    assert s["board"] == "raspberry-pi-5" and res["simulated"]
    assert len(res["sensitivity"]) == 4
    assert "Sensitivity" in (tmp_path / "report.md").read_text()
    # progress said "done" only after the sensitivity runs (it said so after the arms, minutes early)
    stages = [line for line in p.stderr.splitlines() if line.startswith("edgeexit bench: ")]
    assert "sensitivity runs" in stages[-2] and stages[-1].endswith("done")
    n = int(stages[-1].split()[2].split("/")[1])
    assert stages[-1].split()[2] == "{0}/{0}".format(n)


def test_bench_needs_a_board(tmp_path):
    from tests.cli.helpers import assert_one_line_error

    assert_one_line_error(edgeexit("bench", "--out", str(tmp_path)), "needs a board")


def test_warnings_come_once_not_once_per_arm(tmp_path):
    # An impossible deadline and an ignored --meter hold for every arm: each is said once, by the first.
    p = edgeexit("bench", "--board", "jetson-nano", "--simulate", "--limit", "10", "--no-sweep", "--no-sensitivity",
                 "--deadline-ms", "0.05", "--period-ms", "1", "--meter", "none", "--out", str(tmp_path / "b"))
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("no inference can meet the 0.05 ms deadline") == 1, p.stderr
    assert p.stderr.count("--meter none is ignored on a simulated board") == 1, p.stderr


def test_a_solve_after_the_last_inference_is_not_kept(tmp_path):
    """16 inferences: the planner solves after the 16th too, which planned none of them (review finding)."""
    _bench(tmp_path / "b", "jetson-nano", "--limit", "16", "--no-sweep", "--no-sensitivity", "--policies", "predictive")
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [n for n, _ in res["timeline_solves"]["predictive@planned"]] == [8]


def test_policies_that_nothing_fits_may_be_named(tmp_path):
    """full and oracle are --policies choices that calibration does not fit: naming them must not fail the fit."""
    _bench(tmp_path / "b", "jetson-nano", "--limit", "16", "--no-sweep", "--no-sensitivity", "--policies", "oracle,full")
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert "oracle@planned" in json.dumps(res) and "full@max" in json.dumps(res)


def test_unwritable_out_fails_before_benching(tmp_path):
    from tests.cli.helpers import assert_one_line_error

    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = edgeexit("bench", "--board", "jetson-nano", "--simulate", "--out", str(blocker / "out"))
    assert_one_line_error(p, "cannot write the benchmark", "--out DIR")
    assert "bench:" not in p.stderr  # refused before the first arm ran, not after the last


def test_ambiguous_or_empty_options_are_refused(tmp_path):
    from tests.cli.helpers import assert_one_line_error

    out = str(tmp_path / "b")
    both = ("--target-accuracy", "0.9", "--max-drop-pp", "1")  # one of them would be ignored silently
    assert_one_line_error(edgeexit("bench", "--board", "jetson-nano", "--simulate", "--out", out, *both), "not both")
    assert_one_line_error(edgeexit("calibrate", "--model", out, *both), "not both")
    assert_one_line_error(edgeexit("bench", "--board", "jetson-nano", "--simulate", "--policies", ",,", "--out", out),
                          "--policies names no policy")


def test_headline_never_shows_an_arm_that_did_not_run(tmp_path):
    from edgeexit.cli.bench import headline

    p = edgeexit("bench", "--board", "jetson-nano", "--simulate", "--limit", "10", "--no-sensitivity",
                 "--policies", "threshold", "--out", str(tmp_path / "b"))
    assert p.returncode == 0, p.stderr
    # the accuracy sweep fits only what runs too
    assert set(json.loads((tmp_path / "b" / "results.json").read_text())["pareto"]) == {"full", "threshold"}
    assert "predictive did not run" in p.stdout and "0.0%" not in p.stdout
    # only what runs is calibrated: no forecasters trained for a threshold-only bench, no confidence-head stage
    assert "calibrating threshold" in p.stderr and "calibrating predictive" not in p.stderr, p.stderr
    assert "confidence-head" not in p.stderr
    d = {"predictive@planned": {"macs_saving_vs_threshold_at_race": -0.001, "energy_saving_vs_threshold_at_race": 0.2,
                                "energy_period_saving_vs_threshold_at_race": None}}
    assert headline(d) == ("predictive vs threshold@race: MACs 0.1% more, energy/inference 20.0% lower, "
                           "energy/period unknown")
    # the reason given is the real one: a predictive calibration that failed is no --policies choice
    assert "not in --policies" in headline({}) and "calibration failed" in headline({}, {"predictive": "no fit"})


def test_board_and_meter_are_checked_before_calibrating(tmp_path):
    """A wrong --board, or a meter that cannot open, used to surface after half a minute of calibration."""
    import shutil

    from tests.cli.helpers import assert_one_line_error

    out = str(tmp_path / "b")
    assert_one_line_error(edgeexit("bench", "--board", "bogus", "--simulate", "--out", out), "unknown board 'bogus'")
    assert not (tmp_path / "b").exists()  # the --out folder made to check it is not left behind, empty
    p = edgeexit("profile", "--board", "bogus", "--simulate", "--out", str(tmp_path / "p" / "q.json"))
    assert_one_line_error(p, "unknown board 'bogus'")
    assert not (tmp_path / "p").exists()
    tree = tmp_path / "nano"  # a board-like tree: no simulator marker, so the meter is the real backend
    assert edgeexit("sim", "init", "--board", "jetson-nano", str(tree)).returncode == 0
    shutil.rmtree(str(tree / ".edgeexit-sim"))
    p = edgeexit("bench", "--board", "jetson-nano", "--sysfs-root", str(tree), "--meter", "joulescope", "--out", out)
    assert_one_line_error(p, "Joulescope")
    assert "calibrating" not in p.stderr


def test_auto_board_is_named_and_no_sweep_draws_no_pareto(tmp_path):
    tree = tmp_path / "nano"
    assert edgeexit("sim", "init", "--board", "jetson-nano", str(tree)).returncode == 0
    out = tmp_path / "b"
    s = json_out(edgeexit("bench", "--sysfs-root", str(tree), "--limit", "10", "--policies", "threshold", "--no-sweep",
                          "--no-sensitivity", "--out", str(out), "--json"))
    res = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert s["board"] == res["board"] == "jetson-nano"  # what --board auto found, not "auto"
    assert report.startswith("# edgeexit bench: demo-mnist-8exit on jetson-nano")
    assert not (out / "pareto.png").exists() and "pareto.png" not in report
    assert (out / "exit_histogram.png").exists()


def test_a_board_warning_is_said_once_per_bench(tmp_path):
    """Every arm opens its own session: the TX2's offline Denver policy (nvpmodel MAXP_CORE_ARM) was warned
    about by each arm's controller, 21 times in one bench."""
    proc = edgeexit("bench", "--board", "jetson-tx2", "--simulate", "--limit", "50", "--policies", "threshold",
                    "--no-sweep", "--no-sensitivity", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("every CPU offline") == 1, proc.stderr


def test_the_report_explains_its_columns_plots_and_goal(nano):
    """Review of the report as a reader: the Pareto plot, charged at the race clock, seemed to contradict the
    table's planned energies with no caption; the savings' sign and the writes (0.00 per inference) misread."""
    out, _ = nano
    res = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert res["pareto_cpu_khz"] == 1479000  # the clock the race arm ran
    assert "every policy charged at 1479 MHz (race-to-idle accounting" in report
    assert "A saving is positive where the arm spends less" in report and "MAC saving vs threshold" in report
    writes = res["arms"]["threshold@race"]["sysfs_writes"]
    row = next(line for line in report.splitlines() if line.startswith("| threshold@race |"))
    assert "| {} ({:.3f}) |".format(writes, writes / res["n_samples"]) in row
    share = res["planner_cost"]["fraction_of_block0_board"]
    assert "Goal: under 2% of block 0, {} here".format("met" if share < 0.02 else "missed") in report
    assert "forecast out of fold" in report and "by default twice the path" in report
    # The governor's slow inferences overran their periods (a simulated run said nothing of it): named, with the
    # arm's energy per nominal period at its average power beside predictive's saving against that.
    gov = res["arms"]["threshold@governor"]
    assert gov["period_overrun_rate"] > 0 and gov["mean_period_actual_ms"] > res["period_ms"]
    assert not res["arms"]["predictive@planned"]["period_overrun_rate"]
    nominal = gov["mean_energy_period_mj"] * res["period_ms"] / gov["mean_period_actual_ms"]
    saving = 1 - res["arms"]["predictive@planned"]["mean_energy_period_mj"] / nominal
    assert ("**Periods ran over** the nominal {} ms: threshold@governor in {:.1%} of them (mean {:.2f} ms), {:.3f} mJ "
            "per nominal period at its average power (predictive@planned saves {:.1f}% against that)".format(
                res["period_ms"], gov["period_overrun_rate"], gov["mean_period_actual_ms"], nominal, 100 * saving)) in report
    # ... and in the headline, whose per-period saving against it covers its longer periods
    head = next(line for line in report.splitlines() if line.startswith("| energy saving vs classic early exit"))
    assert "per period vs threshold@governor" not in head
    assert "(threshold@governor ran over {:.1%} of its periods; {:.1f}% per nominal period) vs threshold@governor".format(
        gov["period_overrun_rate"], 100 * saving) in head
    assert "(threshold@race ran over" not in head  # race kept its periods


def test_the_pareto_sweep_is_charged_at_the_clock_race_reached(tmp_path):
    # The AGX Orin's default nvpmodel mode caps the CPU at 1728 MHz; the sweep charged the table's 2201.6 MHz,
    # so its "full" point disagreed with the full@max arm.
    res = _bench(tmp_path, "jetson-agx-orin", "--no-sensitivity")
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["pareto_cpu_khz"] == 1728000
    assert res["pareto"]["full"][0]["energy_mj"] == pytest.approx(res["arms"]["full@max"]["mean_energy_mj"], rel=1e-3)
    # The default deadline and the "at the maximum" figures too: they were worked out at 2201.6 MHz.
    from edgeexit.bench.core import default_deadline_ms, reachable_max_khz
    from edgeexit.bundle import load_bundle
    from edgeexit.dvfs import open_board
    from edgeexit.probes import board_physics
    from edgeexit.runtime import Runtime

    assert res["cpu_max_khz"] == 1728000 and res["deadline_default"]
    bundle = load_bundle()
    with open_board("jetson-agx-orin", simulate=True) as session, Runtime(bundle) as rt:
        physics = board_physics(session, 1)
        assert reachable_max_khz(session, physics) == 1728000 < physics.f_max_khz
        at_top = default_deadline_ms(rt, bundle, physics, physics.f_max_khz)
        assert res["deadline_ms"] == default_deadline_ms(rt, bundle, physics, 1728000) > at_top
    report = (tmp_path / "report.md").read_text()
    assert "twice the path through every block and head at the highest clock that could run, 1728 MHz" in report
