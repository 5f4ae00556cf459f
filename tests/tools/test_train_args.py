"""python -m tools.train refuses nonsense numbers and an unusable --out before it trains anything."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from tools.bundle_dir import ExportRefused, check_out_dir
from tools.train import parse_args

pytestmark = pytest.mark.tools

OK = ["--strategy", "joint", "--out", "x"]


@pytest.mark.parametrize("extra", [
    ["--epochs", "0"], ["--epochs", "-3"], ["--backbone-epochs", "0"], ["--distill", "-1"], ["--distill", "nan"],
    ["--lambda-cost", "-0.5"], ["--lambda-cost", "inf"], ["--overlap", "-1"], ["--min-agreement", "1.5"],
    ["--min-agreement", "-0.1"], ["--seed", "-1"], ["--stages", "8:0,16:2"], ["--stages", "0:1"], ["--groups", "0,3"],
    ["--groups", "-2"], ["--groups", "9"],  # the demo's stages are 8 blocks: 0..7
])
def test_nonsense_numbers_are_argparse_errors(extra: list, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(OK + extra)
    assert exc.value.code == 2
    assert "error: argument " + extra[0] in capsys.readouterr().err


def test_sensible_numbers_parse() -> None:
    args = parse_args(OK + ["--epochs", "1", "--distill", "0", "--overlap", "0", "--groups", "3,6", "--min-agreement", "1"])
    assert args.epochs == 1 and args.groups == [3, 6] and args.min_agreement == 1.0


@pytest.mark.parametrize("tool", [["tools.train", "--strategy", "joint", "--epochs", "50"], ["tools.train_demo", "--epochs", "50"],
                                  ["tools.make_heavy_bundle", "--steps", "5000"]])
def test_a_bad_out_is_refused_before_training(tmp_path: Path, tool: List[str]) -> None:
    """Checked in the time it takes to start Python, not after training: the subprocess gets 60 s, while
    training as asked takes far longer than that."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    proc = subprocess.run([sys.executable, "-m"] + tool + ["--out", str(out)],
                          capture_output=True, text=True, timeout=60, cwd=str(Path(__file__).resolve().parents[2]))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["error: {} holds files that are not a bundle's (notes.txt); pick an empty "
                                                "--out".format(out)]
    assert (out / "notes.txt").read_text() == "keep me"


def _bundle_dir(root: Path) -> Path:
    root.mkdir()
    for name in ("manifest.json", "block0.tflite", "calib.npz", "calibration.json"):
        (root / name).write_text("x")
    return root


def test_an_existing_bundle_with_its_profiles_may_be_replaced(tmp_path: Path) -> None:
    out = _bundle_dir(tmp_path / "b")
    (out / "profiles").mkdir()
    (out / "profiles" / "jetson-nano-simulated.json").write_text("{}")
    # a profile write and a calibration write interrupted, under the names replace_file gives their temporaries
    (out / "profiles" / ".raspberry-pi-5.json.1a2b3c4d.tmp").write_text("{")
    (out / ".calibration.json.0f9e8d7c.tmp").write_text("{")
    check_out_dir(out)


@pytest.mark.parametrize("intruder", ["profiles/notes.txt", "profiles/sub/x.json", "other/x.json", "notes.txt",
                                      "profiles/.notes.txt.1a2b3c4d.tmp", ".draft.json.tmp"])
def test_anything_else_in_a_bundle_is_kept(tmp_path: Path, intruder: str) -> None:
    out = _bundle_dir(tmp_path / "b")
    (out / intruder).parent.mkdir(parents=True, exist_ok=True)
    (out / intruder).write_text("keep")
    with pytest.raises(ExportRefused, match="not a bundle's"):
        check_out_dir(out)


def test_out_under_a_file_or_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ExportRefused, match="is not a directory"):
        check_out_dir(tmp_path / "f" / "bundle")
    (tmp_path / "link").symlink_to(_bundle_dir(tmp_path / "b"))
    with pytest.raises(ExportRefused, match="symbolic link"):
        check_out_dir(tmp_path / "link")


@pytest.mark.parametrize("out", ["/proc/edgeexit-bundle", "/sys/edgeexit-bundle"])
def test_out_where_nothing_can_be_created_is_refused_even_for_root(out: str) -> None:
    # Audit defect: os.access says yes to root on /proc and /sys, so training ran and export then failed.
    with pytest.raises(ExportRefused, match="not writable"):
        check_out_dir(Path(out))


def test_out_check_leaves_nothing_behind(tmp_path: Path) -> None:
    check_out_dir(tmp_path / "new" / "bundle")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("out", [".", "..", "./profiles/..", "{cwd}"])
def test_out_that_is_or_holds_the_current_directory_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               out: str) -> None:
    # Audit defect: --out . put the temp bundle inside the old one, deleted both, then died on OSError.
    cwd = _bundle_dir(tmp_path / "b")
    (cwd / "profiles").mkdir()
    monkeypatch.chdir(cwd)
    with pytest.raises(ExportRefused, match="is the current directory or holds it; cd out of it or pick another --out"):
        check_out_dir(Path(out.format(cwd=cwd)))
    check_out_dir(Path("../other"))  # a sibling is fine


def test_train_out_dot_is_one_line_and_keeps_the_bundle(tmp_path: Path) -> None:
    cwd = _bundle_dir(tmp_path / "b")
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo))
    proc = subprocess.run([sys.executable, "-m", "tools.train", "--strategy", "joint", "--epochs", "50", "--out", "."],
                          capture_output=True, text=True, timeout=60, cwd=str(cwd), env=env)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: . is the current directory or holds it; cd out of it or pick another --out"]
    assert sorted(p.name for p in cwd.iterdir()) == ["block0.tflite", "calib.npz", "calibration.json", "manifest.json"]


@pytest.mark.parametrize("extra,overlap", [([], 2), (["--groups", "4"], None), (["--groups", "4", "--overlap", "2"], 2),
                                           (["--overlap", "0"], None), (["--overlap", "3"], 3)])
def test_groups_alone_mean_groups(extra: list, overlap: "int | None") -> None:
    """Audit defect: --groups 4 silently combined with the default --overlap 2, so the documented groups 0-3 / 4-7
    trained overlap-2 windows."""
    from tools.strategies import block_assignment
    from tools.train import config_from_args

    cfg = config_from_args(parse_args(["--strategy", "block-dependent", "--out", "x"] + extra))
    assert cfg.overlap == overlap
    if extra == ["--groups", "4"]:
        spans = [(r.start, r.stop - 1) for r in block_assignment(list(range(8)), overlap=cfg.overlap, groups=cfg.groups)]
        assert spans == [(0, 0), (0, 1), (0, 2), (0, 3), (4, 4), (4, 5), (4, 6), (4, 7)]


def test_help_says_when_overlap_defaults_to_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert "default 2, or none with --groups" in " ".join(capsys.readouterr().out.split())


def test_post_trained_with_one_stage_is_an_argparse_error(capsys: pytest.CaptureFixture) -> None:
    """Audit defect: no block to branch after, so a ValueError traceback came after the backbone's pre-training."""
    with pytest.raises(SystemExit) as exc:
        parse_args(["--strategy", "post-trained", "--out", "x", "--stages", "4:2"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: argument --stages: post-trained needs at least 2 stages, got 1; e.g. 8:2,16:2")
    assert parse_args(["--strategy", "joint", "--out", "x", "--stages", "4:2"]).stages == [(4, 2)]


def test_a_train_config_built_in_code_is_checked_and_resolved_as_the_cli_does() -> None:
    """Review defect: `train_strategy` called as a library with one post-trained stage failed only after
    pre-training its backbone, and TrainConfig(groups=[4]) kept the overlap-2 rule the CLI drops."""
    from tools.train import TrainConfig

    assert TrainConfig(strategy="block-dependent", groups=[4]).overlap is None
    assert TrainConfig(strategy="block-dependent").overlap == 2
    assert TrainConfig(strategy="block-dependent", groups=[4], overlap=3).overlap == 3
    with pytest.raises(ValueError, match="post-trained needs at least 2 stages"):
        TrainConfig(strategy="post-trained", stages=[(8, 2)])
    with pytest.raises(ValueError, match="names a block past the last"):
        TrainConfig(strategy="block-dependent", groups=[9])
