"""`edgeexit run` end to end: the issue's numbers, and one-line errors for bad input."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeexit.paths import demo_bundle_dir
from tests.cli.helpers import assert_one_line_error, edgeexit, json_out

pytestmark = pytest.mark.backend


@pytest.fixture(scope="module")
def full_and_threshold():
    return json_out(edgeexit("run", "--policy", "full", "--json")), json_out(edgeexit("run", "--policy", "threshold", "--json"))


def test_demo_accuracy_and_savings(full_and_threshold):
    full, thr = full_and_threshold
    for s in (full, thr):
        for key in ("n", "accuracy", "mean_macs", "macs_reduction_vs_full", "mean_latency_ms", "p99_latency_ms"):
            assert key in s
    assert full["accuracy"] >= 0.95  # the corrupted-digit demo's floor (tools/train_demo.py)
    assert thr["accuracy"] >= full["accuracy"] - 0.005 - 1e-9
    assert thr["macs_reduction_vs_full"] >= 0.40
    assert full["macs_reduction_vs_full"] == pytest.approx(0.0)


def test_records_written_and_flushed(tmp_path: Path):
    out = tmp_path / "r.jsonl"
    s = json_out(edgeexit("run", "--limit", "25", "--output", str(out), "--json"))
    lines = out.read_text().splitlines()
    assert len(lines) == s["n"] == 25
    rec = json.loads(lines[0])
    for key in ("index", "label", "exit", "correct", "macs", "latency_ms"):
        assert key in rec


def test_records_to_stdout_with_a_dash():
    # `--output -` pipes the records (jq & co.); the summary moves to stderr so stdout stays pure JSONL.
    p = edgeexit("run", "--limit", "5", "--board", "jetson-nano", "--simulate", "--output", "-", "--json")
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["index"] for r in recs] == list(range(5)) and all(r["simulated"] for r in recs)
    assert json.loads(p.stderr[p.stderr.index("{"):])["n"] == 5
    assert not Path("-").exists()


def test_human_output(tmp_path: Path):
    p = edgeexit("run", "--limit", "10")
    assert p.returncode == 0, p.stderr
    assert "accuracy" in p.stdout and "macs_reduction_vs_full" in p.stdout


def _npz(tmp_path: Path, **arrays) -> Path:
    p = tmp_path / "in.npz"
    np.savez(str(p), **arrays)
    return p


def test_wrong_input_shape(tmp_path: Path):
    p = _npz(tmp_path, x=np.zeros((4, 32, 32, 3), np.uint8), y=np.zeros(4, np.int64))
    assert_one_line_error(edgeexit("run", "--input", str(p)), "shape", "reshape")


def test_wrong_input_dtype(tmp_path: Path):
    p = _npz(tmp_path, x=np.zeros((4, 28, 28, 1), np.float32), y=np.zeros(4, np.int64))
    assert_one_line_error(edgeexit("run", "--input", str(p)), "dtype", "astype")


def test_labels_missing_where_needed(tmp_path: Path):
    p = _npz(tmp_path, x=np.zeros((4, 28, 28, 1), np.uint8))
    ok = json_out(edgeexit("run", "--input", str(p), "--json"))  # plain inference needs no labels
    assert ok["accuracy"] is None and ok["n"] == 4
    bad = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(bad))
    # calibrate does need labels: a calibration split without y fails clearly
    m = json.loads((bad / "manifest.json").read_text())
    np.savez(str(bad / "calib.npz"), x=np.zeros((4, 28, 28, 1), np.uint8))
    import hashlib

    m["splits"]["calibration"]["n"] = 4
    m["splits"]["calibration"]["sha256"] = hashlib.sha256((bad / "calib.npz").read_bytes()).hexdigest()
    (bad / "manifest.json").write_text(json.dumps(m))
    assert_one_line_error(edgeexit("calibrate", "--model", str(bad)), "no labels")


def test_calibrate_checks_the_bundle_is_writable_first(tmp_path: Path):
    b = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(b))
    (b / "calibration.json").unlink()
    (b / "calibration.json").mkdir()  # unwritable as a file, even for root (CI)
    p = edgeexit("calibrate", "--model", str(b))
    assert_one_line_error(p, "cannot write the calibration to", "--model DIR (a copy of the bundle)")
    assert p.stdout == ""  # refused before fitting anything


def test_calibrate_to_a_target_the_first_exit_meets_names_the_fix(tmp_path: Path):
    # The other policies are still calibrated; predictive, with nothing to forecast, is left out with a note
    # that names the fix (here a higher target does spread the exits).
    b = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(b))
    out = json_out(edgeexit("calibrate", "--model", str(b), "--target-accuracy", "0", "--json"))
    assert "threshold" in out["policies"] and "predictive" not in out["policies"]
    note = out["not_calibrated"]["predictive"]
    assert "nothing to forecast" in note and "higher target" in note and "--target-accuracy" in note


def test_calibrate_shows_progress_on_a_terminal(tmp_path: Path):
    # Fitting takes seconds here and minutes on a board: on a terminal a bar names the policy being fitted;
    # piped, stderr stays empty (so an error is still the only line).
    import os
    import subprocess
    import sys

    b = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(b))
    master, slave = os.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "edgeexit", "calibrate", "--model", str(b)], stdout=subprocess.PIPE,
                           stderr=slave, timeout=300)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert p.returncode == 0
    for stage in ("calibrate: threshold", "calibrate: predictive (training the forecasters)", "calibrate: done"):
        assert stage.encode() in shown, shown
    piped = edgeexit("calibrate", "--model", str(b))
    assert piped.returncode == 0 and piped.stderr == ""
    # The accuracy to expect on new data is shown beside the in-sample one, for the cross-fitted policies.
    header = next(line for line in piped.stdout.splitlines() if line.startswith("policy"))
    assert "out-of-fold acc" in header
    threshold_row = next(line for line in piped.stdout.splitlines() if line.startswith("threshold "))
    assert "(4-fold)" in threshold_row
    out = json_out(edgeexit("calibrate", "--model", str(b), "--json"))
    assert out["policies"]["threshold"]["out_of_fold_k"] == 4
    assert 0.0 < out["policies"]["threshold"]["out_of_fold_accuracy"] <= 1.0
    # Predictive's out-of-fold figure judges its forecasters only (its thresholds are in-sample): it had
    # threshold's key, with another meaning. And eenet fitted to an accuracy target has no budget.
    pred = out["policies"]["predictive"]
    assert "out_of_fold_accuracy" not in pred and 0.0 < pred["forecaster_out_of_fold_accuracy"] <= 1.0
    assert pred["forecaster_out_of_fold_mean_macs"] > 0
    assert out["policies"]["eenet"]["budget_macs"] is None and out["policies"]["eenet"]["target_accuracy"] > 0


def test_labels_wrong(tmp_path: Path):
    p = _npz(tmp_path, x=np.zeros((4, 28, 28, 1), np.uint8), y=np.array([0, 1, 2, 99]))
    assert_one_line_error(edgeexit("run", "--input", str(p)), "labels")


def test_npy_of_samples_alone(tmp_path: Path):
    # A plain .npy is x without labels (np.load returns an array, not an archive: it used to crash).
    good = tmp_path / "x.npy"
    np.save(str(good), np.zeros((3, 28, 28, 1), np.uint8))
    s = json_out(edgeexit("run", "--input", str(good), "--json"))
    assert s["n"] == 3 and s["accuracy"] is None
    bad = tmp_path / "bad.npy"
    np.save(str(bad), np.zeros((3, 28, 28), np.uint8))
    assert_one_line_error(edgeexit("run", "--input", str(bad)), "x has shape (3, 28, 28)", "reshape")
    empty = tmp_path / "empty.npy"
    np.save(str(empty), np.zeros((0, 28, 28, 1), np.uint8))
    assert_one_line_error(edgeexit("run", "--input", str(empty)), "holds no samples", "at least one")


def test_unreadable_npz(tmp_path: Path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"PK\x03\x04 garbage")
    assert_one_line_error(edgeexit("run", "--input", str(p)), "not a readable .npz")


def test_missing_input_file(tmp_path: Path):
    assert_one_line_error(edgeexit("run", "--input", str(tmp_path / "nope.npz")), "does not exist")


def test_corrupt_tflite(tmp_path: Path):
    b = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(b))
    (b / "block2.tflite").write_bytes(b"\x00" * 64)
    assert_one_line_error(edgeexit("run", "--model", str(b)), "block2.tflite", "sha256")


def test_bad_arguments():
    assert_one_line_error(edgeexit("run", "--limit", "0"))
    assert_one_line_error(edgeexit("run", "--policy", "nonsense"))
    assert_one_line_error(edgeexit("run", "--model", "/nonexistent/bundle"), "not a directory")


@pytest.mark.parametrize("option", ["--deadline-ms", "--period-ms", "--meter-rate-hz"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_numbers_are_refused(option: str, value: str):
    """nan passes every bound check: a nan period ran as "no period" and a nan deadline as none at all."""
    p = edgeexit("run", "--board", "jetson-nano", "--simulate", "--limit", "2", option, value)
    line = assert_one_line_error(p, option)
    assert "is not a finite number" in line or (value == "inf" and "is not in the range" in line), line


@pytest.mark.parametrize("args", [
    ("run", "--threads", "65"),  # LiteRT segfaulted from ~2048 threads, after the clocks were pinned
    ("run", "--board", "jetson-nano", "--simulate", "--period-ms", "1e308"),  # energy sums overflowed to inf
    ("run", "--board", "jetson-nano", "--simulate", "--deadline-ms", "4e6"),
    ("calibrate", "--max-drop-pp", "1e9"),  # a target of -999999903%
    ("calibrate", "--seed", "-1"),  # numpy refused it after the hold-out split: a traceback
    ("bench", "--board", "jetson-nano", "--simulate", "--limit", "10", "--out", "never-made", "--seed", "-1"),
])
def test_numbers_past_their_sense_are_refused(args, tmp_path: Path):
    bundle = tmp_path / "bundle"  # were the value taken, calibrate must not rewrite the shipped demo
    shutil.copytree(str(demo_bundle_dir()), str(bundle))
    extra = ("--model", str(bundle)) if args[0] == "calibrate" else ()
    assert_one_line_error(edgeexit(*args, *extra), args[-2], "is not in the range")


@pytest.mark.parametrize("args", [
    ("bench", "--board", "jetson-nano", "--simulate", "--out", ""),  # ran the whole bench into the working directory
    ("run", "--board", "jetson-nano", "--simulate", "--output", " "),
    ("sim", "init", "--board", "jetson-nano", ""),
    ("profile", "--board", "jetson-nano", "--simulate", "--plot", ""),
])
def test_an_empty_path_is_refused(args, tmp_path: Path):
    """pathlib reads "" as ".": an empty --out (an unset shell variable) meant the working directory."""
    p = subprocess.run([sys.executable, "-m", "edgeexit", *args], cwd=str(tmp_path), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert_one_line_error(p, "is empty: give a path")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--eenet-budget-macs", "--eenet-budget-ms"])
def test_calibrate_refuses_an_infinite_budget(option: str):
    """inf passes `> 0`: eenet would then fit "the most accurate thresholds within inf", i.e. no budget."""
    assert_one_line_error(edgeexit("calibrate", option, "inf"), option, "is not a finite number")


def test_policy_the_bundle_cannot_run():
    # The demo has no confidence heads: the policy's own reason, not "calibration.json is malformed".
    p = edgeexit("run", "--limit", "2", "--policy", "confidence-head")
    assert_one_line_error(p, "has no confidence heads", "choose another --policy", "post-trained")
    assert "malformed" not in p.stderr


def test_forced_backend_env_and_flag():
    import os

    want = os.environ.get("EDGEEXIT_INTERPRETER", "litert")
    s = json_out(edgeexit("run", "--limit", "3", "--json", "--interpreter", want))
    assert s["interpreter"].startswith(want)
    p = edgeexit("run", "--limit", "3", env={"EDGEEXIT_INTERPRETER": "bogus"})
    assert_one_line_error(p, "unknown interpreter backend")


def test_unwritable_output_fails_before_running(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(edgeexit("run", "--limit", "3", "--output", str(blocker / "r.jsonl")),
                          "cannot write the records", "--output FILE")


def test_output_under_a_regular_file_says_it_is_not_a_directory(tmp_path: Path):
    # Audit defect: mkdir's "(File exists)" for DIR/file.png/x.jsonl, where file.png is a regular file.
    blocker = tmp_path / "file.png"
    blocker.write_text("x")
    for output in (blocker / "x.jsonl", blocker / "a" / "x.jsonl"):
        line = assert_one_line_error(edgeexit("run", "--limit", "3", "--output", str(output)),
                                     "{} is not a directory".format(blocker), "--output FILE")
        assert "File exists" not in line


def test_output_where_no_file_can_be_created_fails_before_running():
    """CI runs as root, which every os.access check passes; /proc still refuses new files."""
    assert_one_line_error(edgeexit("run", "--limit", "3", "--output", "/proc/edgeexit-records.jsonl"),
                          "cannot write the records", "--output FILE")


def test_deadline_longer_than_period_is_refused(tmp_path: Path):
    for cmd in (("run", "--limit", "2"), ("bench", "--out", str(tmp_path / "b"))):
        p = edgeexit(*cmd, "--board", "jetson-nano", "--simulate", "--deadline-ms", "4", "--period-ms", "1")
        assert_one_line_error(p, "--deadline-ms 4 is longer than --period-ms 1", "at most the period")


def test_records_report_the_clock_that_ran_on_a_pi5_below_its_floor():
    """The Pi 5 firmware runs 1.5 GHz for a 1.0 GHz pin: records, summary and warning all say so."""
    p = edgeexit("run", "--board", "raspberry-pi-5", "--simulate", "--cpu-khz", "1000000", "--limit", "2",
                 "--output", "-")
    assert p.returncode == 0, p.stderr
    records = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["cpu_khz"] for r in records] == [1500000, 1500000]
    assert all(set(r["cpu_khz_trace"]) == {1500000} for r in records)
    assert "runs at 1500000 khz" in p.stderr


def test_a_full_output_names_the_output():
    # Audit defect: `--output /dev/full` said only "No space left on device".
    assert_one_line_error(edgeexit("run", "--limit", "3", "--output", "/dev/full"), "/dev/full", "No space left", "--output")


def test_a_drop_past_the_final_exit_s_accuracy_is_refused(tmp_path: Path):
    """--max-drop-pp 100 is in its range but left a target of -3.3%, which calibrate fitted and stored."""
    bundle = tmp_path / "bundle"
    shutil.copytree(str(demo_bundle_dir()), str(bundle))
    before = (bundle / "calibration.json").read_bytes()
    line = assert_one_line_error(edgeexit("calibrate", "--model", str(bundle), "--max-drop-pp", "100"), "--max-drop-pp 100")
    assert "leaves no accuracy target" in line and "--target-accuracy 0" in line
    assert (bundle / "calibration.json").read_bytes() == before


def test_the_drop_limit_the_refusal_names_is_taken():
    from types import SimpleNamespace

    from edgeexit.calibration import target_from

    assert target_from(SimpleNamespace(full_accuracy=0.967), 96.70) == 0.0  # 96.7 / 100 > 0.967 in floats
    assert target_from(SimpleNamespace(full_accuracy=2 / 3), 66.67) == 0.0


def test_an_output_through_a_link_into_a_missing_folder_is_written(tmp_path: Path):
    """The folder the check makes is kept for a link's target: the writer makes it only on the path itself, so
    a profile through such a link failed after the profiling."""
    from edgeexit.profiling import check_output, write_profile

    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "missing" / "dir" / "p.json")
    check_output(link)
    write_profile({"x": 1}, link)
    assert json.loads((tmp_path / "missing" / "dir" / "p.json").read_text()) == {"x": 1}
