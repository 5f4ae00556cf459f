"""tools/export.py writes bundles that follow docs/bundle-format.md, and refuses bad ones."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.tools

SPEC_KEYS = {"name", "shape", "dtype", "scale", "zero_point"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _details(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    return it.get_input_details(), it.get_output_details()


def _spec_of(detail) -> dict:
    qp = detail["quantization_parameters"]
    return {"name": detail["name"], "shape": [int(d) for d in detail["shape"]],
            "dtype": np.dtype(detail["dtype"]).name, "scale": float(qp["scales"][0]),
            "zero_point": int(qp["zero_points"][0])}


def test_manifest_matches_the_format_doc(tiny_bundle: Path) -> None:
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    assert m["schema_version"] == 1
    assert m["created_by"].startswith("tools/export.py (edgeexit ")
    assert m["input"]["shape"] == [1, 28, 28, 1]
    assert m["input"]["raw_dtype"] == "uint8" and m["input"]["dtype"] == "int8"
    assert m["input"]["preprocessing"] == {"scale": pytest.approx(1 / 255), "offset": 0.0}
    assert m["num_classes"] == 10 and m["labels"] == [str(i) for i in range(10)]
    assert [b["index"] for b in m["blocks"]] == [0, 1, 2]
    assert [e["after_block"] for e in m["exits"]] == [0, 1, 2]
    for seg in m["blocks"] + m["exits"]:
        assert set(seg["input"]) == SPEC_KEYS and set(seg["output"]) == SPEC_KEYS
        assert seg["macs"] > 0 and seg["params"] > 0
    for e in m["exits"]:
        assert e["output"]["shape"] == [1, 10] and e["confidence_output"] is None
        assert set(e["stats"]) == {"accuracy", "float_agreement", "mean_max_softmax",
                                   "mean_max_softmax_correct", "mean_max_softmax_wrong"}
        assert e["stats"]["float_agreement"] >= 0.9
    # Block k's output chains into block k+1 and into its exits; the scales agree (same calib).
    for a, b in zip(m["blocks"], m["blocks"][1:]):
        assert a["output"]["shape"] == b["input"]["shape"]
        assert a["output"]["scale"] == pytest.approx(b["input"]["scale"], rel=1e-5)
        assert a["output"]["zero_point"] == b["input"]["zero_point"]
    for e in m["exits"]:
        assert e["input"]["shape"] == m["blocks"][e["after_block"]]["output"]["shape"]
    assert m["input"]["quantization"] == {"scale": m["blocks"][0]["input"]["scale"],
                                          "zero_point": m["blocks"][0]["input"]["zero_point"]}
    assert m["splits"]["calibration"]["n"] == 200 and m["splits"]["evaluation"]["n"] == 100


def test_macs_are_analytic(tiny_bundle: Path) -> None:
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    # block0: conv3x3 1->4, stride 2 on 28x28 -> 14x14x4; block1: 4->8 stride 2 -> 7x7x8.
    assert m["blocks"][0]["macs"] == 14 * 14 * 9 * 1 * 4
    assert m["blocks"][0]["params"] == 9 * 4 + 4
    assert m["blocks"][1]["macs"] == 7 * 7 * 9 * 4 * 8
    # exit1: 7x7 pooled by 2 -> 3x3x8 = 72 features -> 10 logits.
    assert m["exits"][1]["macs"] == 3 * 3 * 8 * 4 + 72 * 10
    assert m["exits"][1]["params"] == 72 * 10 + 10


def test_sha256_and_tensor_specs_are_real(tiny_bundle: Path) -> None:
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    for seg in m["blocks"] + m["exits"]:
        path = tiny_bundle / seg["file"]
        assert seg["sha256"] == _sha(path)
        ins, outs = _details(path)
        assert [_spec_of(d) for d in ins] == [seg["input"]]
        assert [_spec_of(d) for d in outs] == [seg["output"]]
        assert seg["input"]["dtype"] == "int8" and seg["output"]["dtype"] == "int8"
    for split in m["splits"].values():
        assert split["sha256"] == _sha(tiny_bundle / split["file"])


def test_splits_hold_raw_uint8_and_int64_labels(tiny_bundle: Path, tiny_splits) -> None:
    with np.load(tiny_bundle / "eval.npz") as d:
        assert d["x"].dtype == np.uint8 and d["x"].shape == (100, 28, 28, 1)
        assert d["y"].dtype == np.int64
        np.testing.assert_array_equal(d["x"], tiny_splits.evaluation.x)
        np.testing.assert_array_equal(d["y"], tiny_splits.evaluation.y)


def test_the_runtime_accepts_the_bundle(tiny_bundle: Path) -> None:
    from edgeexit.bundle import load_bundle

    bundle = load_bundle(tiny_bundle)
    assert len(bundle.blocks) == 3 and len(bundle.exits) == 3
    assert len(bundle.split("evaluation")) == 100


def test_stats_match_an_independent_int8_run(tiny_bundle: Path, tiny_splits) -> None:
    """Run the int8 chain here, by hand, and compare with the manifest's calibration accuracy."""
    from ai_edge_litert.interpreter import Interpreter

    m = json.loads((tiny_bundle / "manifest.json").read_text())
    its = [Interpreter(model_path=str(tiny_bundle / s["file"]), num_threads=1)
           for s in m["blocks"] + m["exits"]]
    for it in its:
        it.allocate_tensors()
    nb = len(m["blocks"])
    q = m["input"]["quantization"]
    correct = np.zeros(nb)
    x = tiny_splits.to_float(tiny_splits.calibration.x)
    for i in range(len(x)):
        h = np.clip(np.round(x[i : i + 1] / q["scale"]) + q["zero_point"], -128, 127).astype(np.int8)
        for k in range(nb):
            it = its[k]
            it.set_tensor(it.get_input_details()[0]["index"], h)
            it.invoke()
            h = it.get_tensor(it.get_output_details()[0]["index"])
            head = its[nb + k]
            head.set_tensor(head.get_input_details()[0]["index"], h)
            head.invoke()
            logits = head.get_tensor(head.get_output_details()[0]["index"])
            correct[k] += int(logits.argmax() == tiny_splits.calibration.y[i])
    for k, e in enumerate(m["exits"]):
        assert correct[k] / len(x) == pytest.approx(e["stats"]["accuracy"])


def _outlier_net():
    """A net whose int8 version cannot work: one channel of block 0 is a huge constant, so the
    block output's int8 scale swamps the informative channels and the exit sees only zeros."""
    import keras

    from tools.multi_exit import ExitHead, MultiExitNet

    x = keras.Input((28, 28, 1), name="bad_in")
    conv = keras.layers.Conv2D(4, 1, activation="relu", name="bad_conv")
    block = keras.Model(x, conv(x), name="bad_block0")
    kernel = np.zeros((1, 1, 1, 4), np.float32)
    kernel[..., 1:] = 1.0
    conv.set_weights([kernel, np.array([1e5, 0.0, 0.0, 0.0], np.float32)])
    hx = keras.Input((28, 28, 4), name="bad_head_in")
    h = keras.layers.Flatten()(hx)
    dense = keras.layers.Dense(10, name="bad_logits")
    head = keras.Model(hx, dense(h), name="bad_exit0")
    w = np.random.default_rng(0).normal(size=(28 * 28 * 4, 10)).astype(np.float32)
    w[0::4] = 0.0  # ignore the constant channel
    dense.set_weights([w, np.zeros(10, np.float32)])
    return MultiExitNet([block], [ExitHead(head, 0)], (28, 28, 1), 10)


def test_refuses_below_the_agreement_threshold(tmp_path: Path, tiny_splits) -> None:
    from tools.export import ExportRefused, export_bundle

    out = tmp_path / "bad"
    with pytest.raises(ExportRefused, match=r"exit0: int8 chain agrees with the float model"):
        export_bundle(_outlier_net(), out, splits=tiny_splits, name="bad", training={},
                      verbose=False)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp dir left behind


def test_rejects_an_impossible_threshold(tmp_path: Path, tiny_splits) -> None:
    from tools.export import export_bundle

    with pytest.raises(ValueError, match="min_agreement"):
        export_bundle(_outlier_net(), tmp_path / "x", splits=tiny_splits, name="x",
                      training={}, min_agreement=1.5, verbose=False)


def test_refuses_to_overwrite_a_foreign_directory(tmp_path: Path, tiny_splits) -> None:
    from tools.export import ExportRefused, export_bundle

    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ExportRefused, match="not a bundle"):
        export_bundle(_outlier_net(), out, splits=tiny_splits, name="x", training={},
                      verbose=False)
    assert (out / "notes.txt").read_text() == "keep me"


def test_an_out_with_dotdot_replaces_the_bundle_it_names(tmp_path: Path, tiny_splits) -> None:
    """b/profiles/.. is b: the temp dir went into b/profiles, the replace deleted it with b, and the rename failed."""
    from tools.export import export_bundle

    b = tmp_path / "b"
    (b / "profiles").mkdir(parents=True)
    (b / "manifest.json").write_text("{}")
    (b / "profiles" / "pi.json").write_text("{}")
    m = export_bundle(_outlier_net(), b / "profiles" / "..", splits=tiny_splits, name="dotdot", training={},
                      min_agreement=0.0, verbose=False)
    assert json.loads((b / "manifest.json").read_text()) == m
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert not (b / "profiles").exists()


def _float_splits(splits):
    """The same images as float [0, 1] samples (preprocessing scale 1): raw data that is not uint8."""
    from dataclasses import replace

    from tools.data import Split

    return replace(splits, calibration=Split(splits.to_float(splits.calibration.x), splits.calibration.y),
                   evaluation=Split(splits.to_float(splits.evaluation.x), splits.evaluation.y),
                   preprocessing_scale=1.0, preprocessing_offset=0.0)


def test_float_samples_are_not_truncated_into_uint8_splits(tmp_path: Path, tiny_splits) -> None:
    """Audit defect: x.astype('uint8') silently turned float [0, 1] images into 0s and 1s in calib.npz/eval.npz."""
    from tools.export import ExportRefused, export_bundle

    floats = _float_splits(tiny_splits)
    with pytest.raises(ExportRefused, match=r"the calibration split's float32 samples change when stored as "
                                            r"raw_dtype 'uint8'; pass raw_dtype='float32'"):
        export_bundle(_outlier_net(), tmp_path / "f", splits=floats, name="f", training={}, min_agreement=0.0,
                      verbose=False)
    assert list(tmp_path.iterdir()) == []
    m = export_bundle(_outlier_net(), tmp_path / "f", splits=floats, name="f", training={}, min_agreement=0.0,
                      raw_dtype="float32", verbose=False)
    assert m["input"]["raw_dtype"] == "float32"
    with np.load(tmp_path / "f" / "eval.npz") as d:
        np.testing.assert_array_equal(d["x"], floats.evaluation.x)


def test_export_refuses_splits_that_share_samples():
    """An evaluation sample calibration has seen is scored in-sample, where every calibration target holds by
    construction: the export refuses before minutes of conversion."""
    from tools.bundle_dir import ExportRefused
    from tools.data import DataSplits, Split
    from tools.export import _raw_splits

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(6, 4, 4, 1)).astype(np.uint8)
    y = np.arange(6) % 2
    ok = DataSplits(Split(x, y), Split(x[:3], y[:3]), Split(x[3:], y[3:]), dataset="t",
                    preprocessing_scale=1 / 255, preprocessing_offset=0.0)
    assert set(_raw_splits(ok, "uint8")) == {"calibration", "evaluation"}
    shared = DataSplits(Split(x, y), Split(x[:4], y[:4]), Split(x[2:], y[2:]), dataset="t",
                        preprocessing_scale=1 / 255, preprocessing_offset=0.0)
    with pytest.raises(ExportRefused, match=r"^2 sample\(s\) are in both the calibration and the evaluation split"):
        _raw_splits(shared, "uint8")
