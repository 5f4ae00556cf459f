"""python -m tools.compare_strategies: one run's refused export no longer ends the whole comparison in a
traceback (losing the finished rows), --min-agreement is an option, and bad outputs fail before training."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools.conftest import build_tiny_net

pytestmark = pytest.mark.tools

RUNS = [("joint (first)", dict(strategy="joint")), ("joint (second)", dict(strategy="joint"))]


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch, tiny_splits):
    """Two runs of an untrained tiny net on the tiny split: the loop, not the training, is under test."""
    import tools.compare_strategies as cs
    import tools.data
    import tools.train

    nets = iter([build_tiny_net("cmp_a_"), build_tiny_net("cmp_b_")])
    monkeypatch.setattr(cs, "RUNS", RUNS)
    monkeypatch.setattr(tools.data, "mnist_splits", lambda seed=0, **_: tiny_splits)
    monkeypatch.setattr(tools.train, "train_strategy", lambda cfg, splits, log=print: next(nets))
    return cs


def test_a_refused_export_is_a_row_and_the_others_are_kept(fast, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import tools.export

    real = tools.export.export_bundle
    seen = []

    def export(net, out, **kw):
        seen.append(kw["min_agreement"])
        if len(seen) == 2:
            raise tools.export.ExportRefused("exit1: int8 chain agrees with the float model on only 50.00% of the "
                                             "calibration split (< 70.00%)")
        return real(net, out, **dict(kw, min_agreement=0.0))

    monkeypatch.setattr(tools.export, "export_bundle", export)
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n")
    rc = fast.main(["--out-dir", str(tmp_path / "b"), "--doc", str(doc), "--min-agreement", "0.7", "--epochs", "1"])
    assert rc == 1
    assert seen == [0.7, 0.7]
    text = doc.read_text()
    assert text.startswith("intro\n") and "--min-agreement 0.7" in text
    first = next(line for line in text.splitlines() if line.startswith("| joint (first) |"))
    assert "export refused" not in first and first.count("|") == 7  # label, 3 exits, sim, seconds: 6 cells
    assert "| joint (second) | - | - | - | export refused (below) |" in text
    assert "- joint (second): export refused: exit1: int8 chain agrees" in text
    assert (tmp_path / "b" / "joint" / "0" / "manifest.json").is_file()
    assert "1 of 2 exports refused" in capsys.readouterr().err


@pytest.fixture
def no_training(fast, monkeypatch: pytest.MonkeyPatch):
    import tools.train

    def never(*_a, **_k):
        raise AssertionError("trained before checking the outputs")

    monkeypatch.setattr(tools.train, "train_strategy", never)
    return fast


def _one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_a_bad_out_dir_fails_before_training(no_training, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exc:
        no_training.main(["--out-dir", str(tmp_path / "file"), "--doc", str(tmp_path / "doc.md")])
    assert exc.value.code == 1
    assert "is not a directory" in _one_error_line(capsys)


def test_an_unwritable_doc_fails_before_training(no_training, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rc = no_training.main(["--out-dir", str(tmp_path / "b"), "--doc", str(tmp_path / "missing" / "doc.md")])
    assert rc == 1
    assert "does not exist" in _one_error_line(capsys)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("extra", [["--min-agreement", "2"], ["--min-agreement", "nan"], ["--epochs", "0"],
                                   ["--seed", "-1"]])
def test_nonsense_numbers_are_argparse_errors(extra: list, capsys: pytest.CaptureFixture) -> None:
    from tools.compare_strategies import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(extra)
    assert exc.value.code == 2
    assert "error: argument " + extra[0] in capsys.readouterr().err
