"""tools.train_demo and tools.make_heavy_bundle: nonsense numbers are argparse errors before any training
(--min-agreement 2 was a ValueError traceback after the full training, --grid 0 a ZeroDivisionError,
--codewords 0 a Keras error, --steps 0 / --epochs 0 silently untrained bundles); train_demo says to calibrate
the bundle it wrote; make_heavy_bundle exports real BatchNorm statistics."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tools


@pytest.mark.parametrize("extra", [
    ["--min-agreement", "2"], ["--min-agreement", "-0.1"], ["--grid", "0"], ["--codewords", "0"], ["--epochs", "0"],
    ["--seed", "-1"], ["--max-noise", "nan"], ["--max-noise", "-5"], ["--epochs", "two"],
])
def test_train_demo_refuses_nonsense_numbers(extra: list, capsys: pytest.CaptureFixture) -> None:
    from tools.train_demo import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(extra)
    assert exc.value.code == 2
    assert "error: argument " + extra[0] in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--steps", "0"], ["--steps", "-1"], ["--min-agreement", "2"],
                                   ["--min-agreement", "inf"], ["--seed", "-1"]])
def test_make_heavy_bundle_refuses_nonsense_numbers(extra: list, capsys: pytest.CaptureFixture) -> None:
    from tools.make_heavy_bundle import build_parser

    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--out", "x"] + extra)
    assert exc.value.code == 2
    assert "error: argument " + extra[0] in capsys.readouterr().err


def test_sensible_numbers_parse() -> None:
    from tools.make_heavy_bundle import build_parser as heavy
    from tools.train_demo import build_parser as demo

    a = demo().parse_args(["--grid", "4", "--codewords", "8", "--min-agreement", "1", "--epochs", "1"])
    assert (a.grid, a.codewords, a.min_agreement, a.epochs) == (4, 8, 1.0, 1)
    assert heavy().parse_args(["--out", "x", "--steps", "1"]).steps == 1


def test_train_demo_ends_by_saying_to_calibrate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_splits,
                                                capsys: pytest.CaptureFixture) -> None:
    """Re-creating the demo deleted calibration.json and said nothing: the README's quick start then failed."""
    import tools.data
    import tools.training
    from tools import train_demo

    monkeypatch.setattr(tools.data, "mnist_splits", lambda seed=0, **_: copy.deepcopy(tiny_splits))  # main corrupts
    monkeypatch.setattr(tools.training, "train_loop", lambda *a, **k: None)  # untrained: the ending is under test
    monkeypatch.setattr(train_demo, "FLOOR", 0.0)
    out = tmp_path / "demo"
    assert train_demo.main(["--out", str(out), "--min-agreement", "0", "--epochs", "1", "--codewords", "4"]) == 0
    assert (out / "manifest.json").is_file() and not (out / "calibration.json").exists()
    assert "next: calibrate the bundle: edgeexit calibrate --model {}".format(out) in capsys.readouterr().out


def test_recompute_batchnorm_sets_the_statistics_of_the_data() -> None:
    from tools.multi_exit import ExitHead, MultiExitNet, conv_block, pooled_dense_head
    from tools.training import recompute_batchnorm

    block = conv_block((8, 8, 3), 4, 1, "bnfix_b0")
    head = pooled_dense_head((8, 8, 4), 10, "bnfix_e0")
    net = MultiExitNet([block], [ExitHead(head, 0)], (8, 8, 3), 10)
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(64, 8, 8, 3)).astype(np.float32)
    bn = block.get_layer("bnfix_b0_bn")
    assert recompute_batchnorm(net, x) == 1
    conv = np.asarray(block.get_layer("bnfix_b0_conv")(x))
    np.testing.assert_allclose(np.asarray(bn.moving_mean), conv.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(bn.moving_variance), conv.var(axis=(0, 1, 2)), rtol=1e-3, atol=1e-5)
    assert bn.momentum == pytest.approx(0.99)  # restored
    np.testing.assert_allclose(np.asarray(block(x, training=False)), np.asarray(block(x, training=True)),
                               rtol=1e-3, atol=1e-4)


def test_make_heavy_bundle_exports_real_batchnorm_statistics(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    """With the default 30 steps the moving statistics stayed near their 0/1 init (momentum 0.99): the final exit
    predicted one class for every sample, so the agreement check and calibration were vacuous."""
    import tools.export
    from tools import make_heavy_bundle

    seen = {}

    def export(net, out, **kw):
        bn = net.blocks[0].get_layer("stem_bn")
        seen["mean"] = np.asarray(bn.moving_mean)
        seen["float_pred"] = net.exit_logits(net.block_outputs(kw["splits"].to_float(kw["splits"].evaluation.x)))[-1]
        raise tools.export.ExportRefused("stop here")

    monkeypatch.setattr(tools.export, "export_bundle", export)
    assert make_heavy_bundle.main(["--out", str(tmp_path / "heavy"), "--steps", "1"]) == 1
    # The stem's conv outputs on images near 0.5 have means far from the init 0: after one step at momentum
    # 0.99 the moving means were 1% of them.
    assert np.abs(seen["mean"]).max() > 0.05
    assert len(np.unique(seen["float_pred"].argmax(1))) > 1


def test_heavy_samples_vary_in_difficulty() -> None:
    from tools.make_heavy_bundle import synthetic_splits

    s = synthetic_splits(0, n_train=40, n_calib=20, n_eval=20)
    assert s.train.x.shape == (40, 32, 32, 3) and s.train.x.dtype == np.uint8
    # distance to the class mean image varies across samples (severity ~ U(0, 1)), not just pixel noise
    x = s.train.x.astype(np.float32)
    means = {c: x[s.train.y == c].mean(axis=0) for c in range(10)}
    dist = np.array([np.abs(x[i] - means[s.train.y[i]]).mean() for i in range(len(x))])
    assert dist.max() > 1.5 * dist.min()


_HIDE = ("import runpy, sys\n"
         "for m in ('tensorflow', 'mlxtend', 'ai_edge_litert'): sys.modules[m] = None  # as if not installed\n"
         "sys.argv = sys.argv[1:]\n"
         "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n")


@pytest.mark.parametrize("tool", [["tools.train", "--strategy", "joint", "--epochs", "1"], ["tools.train_demo", "--epochs", "1"],
                                  ["tools.make_heavy_bundle", "--steps", "1"], ["tools.compare_strategies", "--epochs", "1"]])
def test_without_the_tools_extra_one_line_names_it(tmp_path: Path, tool: list) -> None:
    """Audit defect: a 13-line ModuleNotFoundError traceback, and LiteRT's only after minutes of training."""
    import subprocess
    import sys

    out = ["--out-dir" if tool[0] == "tools.compare_strategies" else "--out", str(tmp_path / "b")]
    if tool[0] == "tools.compare_strategies":
        out += ["--doc", str(tmp_path / "t.md")]
    proc = subprocess.run([sys.executable, "-c", _HIDE] + tool + out, capture_output=True, text=True, timeout=60,
                          cwd=str(Path(__file__).resolve().parents[2]))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: the tools need the [tools] extra (missing: tensorflow, mlxtend, ai_edge_litert): pip install '.[tools]'"]
    assert list(tmp_path.iterdir()) == []


def test_with_the_tools_extra_nothing_is_missing() -> None:
    from tools.bundle_dir import missing_tools_modules

    assert missing_tools_modules() == []


def test_train_demo_below_its_floor_keeps_the_bundle_it_would_replace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                      tiny_splits, capsys: pytest.CaptureFixture) -> None:
    """Audit defect: the default --out is the shipped demo, and it was replaced before the floor check that then
    returned 1. Now the new bundle is built beside it and dropped."""
    import tools.data
    import tools.training
    from tools import train_demo

    monkeypatch.setattr(tools.data, "mnist_splits", lambda seed=0, **_: copy.deepcopy(tiny_splits))
    monkeypatch.setattr(tools.training, "train_loop", lambda *a, **k: None)  # untrained: far below the floor
    out = tmp_path / "demo"
    out.mkdir()
    old = {"manifest.json": "{}", "block0.tflite": "old", "calibration.json": "{}"}
    for name, text in old.items():
        (out / name).write_text(text)
    assert train_demo.main(["--out", str(out), "--min-agreement", "0", "--epochs", "1", "--codewords", "4"]) == 1
    assert {p.name: p.read_text() for p in out.iterdir()} == old
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # the staging dir went too
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: final exit ") and err[-1].endswith(
        "below the 95% floor on the evaluation split; {} left as it was, train longer (--epochs)".format(out))
