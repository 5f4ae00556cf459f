"""Export a Keras multi-exit network as an edgeexit bundle (docs/bundle-format.md, schema 1).

One int8 .tflite per block and per exit head. Segment k+1 is calibrated on segment k's float
outputs for the same calibration images, so the int8 scales chain exactly and the runtime can
pass int8 tensors from block to block without requantizing. After conversion the exporter reads
every segment back with ai_edge_litert, runs the int8 chain block by block on the calibration
split and refuses (:class:`ExportRefused`) when any exit's top-1 agreement with the float model
falls below ``min_agreement``; nothing is written to the output directory in that case.

Usage as a library::

    from tools.export import export_bundle
    manifest = export_bundle(net, "out/bundle", splits=splits, name="my-net", training={...})
"""
from __future__ import annotations

import io
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeexit.bundle.manifest import sha256_file

from tools.bundle_dir import ExportRefused, check_out_dir
from tools.data import DataSplits
from tools.multi_exit import MultiExitNet, model_macs_params

SCHEMA_VERSION = 1
DEFAULT_MIN_AGREEMENT = 0.98


# --- conversion ---------------------------------------------------------------------------------
def convert_int8(model, representative: np.ndarray) -> bytes:
    """Full-integer (int8 in, int8 out) conversion calibrated on ``representative`` (float)."""
    import tensorflow as tf

    rep = representative.astype(np.float32)

    def gen():
        for i in range(len(rep)):
            yield [rep[i : i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """np.savez_compressed with fixed zip timestamps, so re-exports are byte-identical."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


# --- reading segments back ----------------------------------------------------------------------
def _interpreter(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    return it


def tensor_spec(detail: dict) -> dict:
    """The manifest's tensor spec from an interpreter input/output detail."""
    qp = detail["quantization_parameters"]
    if len(qp["scales"]) != 1:
        raise ExportRefused(f"tensor {detail['name']} is not per-tensor quantized")
    return {
        "name": detail["name"],
        "shape": [int(d) for d in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "scale": float(qp["scales"][0]),
        "zero_point": int(qp["zero_points"][0]),
    }


@dataclass
class Segment:
    """A converted segment opened with ai_edge_litert; outputs matched by shape, not position."""

    path: Path
    interpreter: object
    input: dict
    output: dict  # the block output, or an exit's logits
    confidence: dict | None = None

    @classmethod
    def open(cls, path: Path, kind: str, num_classes: int = 0) -> "Segment":
        it = _interpreter(path)
        ins = it.get_input_details()
        outs = it.get_output_details()
        if len(ins) != 1:
            raise ExportRefused(f"{path.name}: expected one input, got {len(ins)}")
        in_detail = ins[0]
        if kind == "block":
            if len(outs) != 1:
                raise ExportRefused(f"{path.name}: a block must have one output, got {len(outs)}")
            return cls(path, it, in_detail, outs[0])
        logits = [o for o in outs if list(o["shape"]) == [1, num_classes]]
        conf = [o for o in outs if list(o["shape"]) == [1, 1]]
        if len(logits) != 1 or len(outs) != 1 + len(conf) or len(conf) > 1:
            raise ExportRefused(f"{path.name}: exit outputs {[list(o['shape']) for o in outs]} "
                                f"are not logits [1, {num_classes}] (+ confidence [1, 1])")
        return cls(path, it, in_detail, logits[0], conf[0] if conf else None)

    def run(self, q: np.ndarray) -> np.ndarray:
        it = self.interpreter
        it.set_tensor(self.input["index"], q)
        it.invoke()
        return it.get_tensor(self.output["index"])

    def confidence_value(self) -> np.ndarray:
        assert self.confidence is not None
        return self.interpreter.get_tensor(self.confidence["index"])


def _qparams(detail: dict) -> tuple[float, int]:
    qp = detail["quantization_parameters"]
    return float(qp["scales"][0]), int(qp["zero_points"][0])


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int8)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - zero_point) * np.float32(scale)


def requantize(q: np.ndarray, src: tuple[float, int], dst: tuple[float, int]) -> np.ndarray:
    if np.isclose(src[0], dst[0], rtol=1e-5) and src[1] == dst[1]:
        return q
    return quantize(dequantize(q, *src), *dst)


@dataclass
class ChainResult:
    logits: list[np.ndarray]  # per exit, dequantized [N, C]
    confidence: list[np.ndarray | None]  # per exit, dequantized [N] or None


def run_int8_chain(blocks: list[Segment], exits: list[tuple[int, Segment]],
                   x_float: np.ndarray) -> ChainResult:
    """Run every block and every exit head on each sample, one sample at a time (batch 1)."""
    n = len(x_float)
    logits = [np.zeros((n, e.output["shape"][-1]), np.float32) for _, e in exits]
    confs: list[np.ndarray | None] = [np.zeros(n, np.float32) if e.confidence else None
                                      for _, e in exits]
    in_q = _qparams(blocks[0].input)
    by_block: dict[int, list[int]] = {}
    for j, (after, _) in enumerate(exits):
        by_block.setdefault(after, []).append(j)
    for i in range(n):
        q = quantize(x_float[i : i + 1], *in_q)
        for k, blk in enumerate(blocks):
            if k > 0:
                q = requantize(q, _qparams(blocks[k - 1].output), _qparams(blk.input))
            q = blk.run(q)
            for j in by_block.get(k, []):
                head = exits[j][1]
                hq = requantize(q, _qparams(blk.output), _qparams(head.input))
                out = head.run(hq)
                logits[j][i] = dequantize(out, *_qparams(head.output))[0]
                if head.confidence is not None:
                    confs[j][i] = dequantize(head.confidence_value(),  # type: ignore[index]
                                             *_qparams(head.confidence))[0, 0]
    return ChainResult(logits, confs)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def exit_stats(logits: np.ndarray, float_logits: np.ndarray, y: np.ndarray) -> dict:
    """The manifest's per-exit stats (docs/bundle-format.md)."""
    pred = logits.argmax(1)
    p = softmax(logits).max(1)
    correct = pred == y

    def mean_or_none(v: np.ndarray) -> float | None:
        return float(v.mean()) if len(v) else None

    return {
        "accuracy": float(correct.mean()),
        "float_agreement": float((pred == float_logits.argmax(1)).mean()),
        "mean_max_softmax": float(p.mean()),
        "mean_max_softmax_correct": mean_or_none(p[correct]),
        "mean_max_softmax_wrong": mean_or_none(p[~correct]),
    }


# --- the exporter -------------------------------------------------------------------------------
def export_bundle(
    net: MultiExitNet,
    out_dir: str | Path,
    *,
    splits: DataSplits,
    name: str,
    training: dict,
    labels: list[str] | None = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    raw_dtype: str = "uint8",
    verbose: bool = True,
) -> dict:
    """Write ``net`` as a bundle into ``out_dir`` and return its manifest.

    ``splits.calibration`` calibrates every segment and gives the per-exit stats;
    ``splits.evaluation`` is stored as eval.npz and its int8-chain accuracy per exit goes into
    ``training["eval_accuracy"]``. Raises :class:`ExportRefused` (writing nothing) if any exit's
    int8/float top-1 agreement on the calibration split is below ``min_agreement``, or if the splits'
    samples do not survive a cast to ``raw_dtype`` (the dtype the bundle stores them in; float data
    needs ``raw_dtype="float32"``).
    """
    import tensorflow as tf

    from edgeexit import __version__ as edgeexit_version

    if not 0.0 <= min_agreement <= 1.0:
        raise ValueError(f"min_agreement must lie in [0, 1], got {min_agreement}")
    out = Path(out_dir)
    check_out_dir(out)
    raw_x = _raw_splits(splits, raw_dtype)  # before minutes of conversion
    # Absolute and without "..": out.parent must be the folder out sits in, or the temp dir lands inside out.
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it 0700; a bundle is shipped, not private
    try:
        manifest = _export_into(net, tmp, splits, name, training, labels, min_agreement,
                                raw_dtype, raw_x, verbose, tf.__version__, edgeexit_version)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest


def _raw_splits(splits: DataSplits, raw_dtype: str) -> dict[str, np.ndarray]:
    """The held-out splits' x as ``raw_dtype``, refused when the cast changes a value: float [0, 1] images stored
    as uint8 became 0s and 1s, and the bundle's own splits then scored near chance."""
    raw = {}
    for part, split in (("calibration", splits.calibration), ("evaluation", splits.evaluation)):
        with np.errstate(invalid="ignore", over="ignore"):  # NaN, inf, out of range: refused below
            x = split.x.astype(raw_dtype)
        if not np.array_equal(x, split.x):
            raise ExportRefused(f"the {part} split's {split.x.dtype} samples change when stored as raw_dtype "
                                f"{raw_dtype!r}; pass raw_dtype={split.x.dtype.name!r} (or samples that are "
                                f"{raw_dtype} values)")
        raw[part] = x
    shared = {r.tobytes() for r in raw["calibration"]} & {r.tobytes() for r in raw["evaluation"]}
    if shared:
        # an evaluation sample calibration has seen is scored in-sample, where the targets hold by construction
        raise ExportRefused(f"{len(shared)} sample(s) are in both the calibration and the evaluation split; make them "
                            f"disjoint (split the held-out data before export)")
    return raw


def _log(verbose: bool, msg: str) -> None:
    if verbose:
        print(msg, flush=True)


def _segment_costs(net: MultiExitNet) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(MACs, params) of every block and head, counted before any conversion: a layer the count cannot
    handle fails the export in a second, as ExportRefused, not after minutes of conversion."""
    from tools.multi_exit import UncountedLayer

    try:
        return ([model_macs_params(b) for b in net.blocks],
                [model_macs_params(e.model) for e in net.exits])
    except UncountedLayer as exc:
        raise ExportRefused(str(exc)) from None


def _export_into(net, tmp, splits, name, training, labels, min_agreement, raw_dtype, raw_x, verbose,
                 tf_version, edgeexit_version) -> dict:
    block_costs, head_costs = _segment_costs(net)
    calib_f = splits.to_float(splits.calibration.x)
    eval_f = splits.to_float(splits.evaluation.x)
    c = net.num_classes

    # Float chain on the calibration images: block k's outputs calibrate block k+1 and its exits.
    calib_outs = net.block_outputs(calib_f)
    block_inputs = [calib_f] + calib_outs[:-1]
    for k, block in enumerate(net.blocks):
        (tmp / f"block{k}.tflite").write_bytes(convert_int8(block, block_inputs[k]))
        _log(verbose, f"export: block{k} converted")
    for e, head in enumerate(net.exits):
        (tmp / f"exit{e}.tflite").write_bytes(convert_int8(head.model, calib_outs[head.after_block]))
        _log(verbose, f"export: exit{e} converted")

    blocks = [Segment.open(tmp / f"block{k}.tflite", "block") for k in range(len(net.blocks))]
    heads = [(h.after_block, Segment.open(tmp / f"exit{e}.tflite", "exit", c))
             for e, h in enumerate(net.exits)]
    for e, (h, (_, seg)) in enumerate(zip(net.exits, heads)):
        if h.has_confidence != (seg.confidence is not None):
            raise ExportRefused(f"exit{e}: confidence output expected={h.has_confidence}")

    # The int8 chain against the float model, per exit.
    float_calib = net.exit_logits(calib_outs)
    float_eval = net.exit_logits(net.block_outputs(eval_f))
    chain_calib = run_int8_chain(blocks, heads, calib_f)
    chain_eval = run_int8_chain(blocks, heads, eval_f)
    stats = [exit_stats(chain_calib.logits[e], float_calib[e], splits.calibration.y)
             for e in range(len(heads))]
    eval_acc = [float((chain_eval.logits[e].argmax(1) == splits.evaluation.y).mean())
                for e in range(len(heads))]
    eval_agree = [float((chain_eval.logits[e].argmax(1) == float_eval[e].argmax(1)).mean())
                  for e in range(len(heads))]
    for e, s in enumerate(stats):
        _log(verbose, f"export: exit{e} calib acc {s['accuracy']:.4f} agreement "
                      f"{s['float_agreement']:.4f} | eval acc {eval_acc[e]:.4f}")
    worst = min(range(len(stats)), key=lambda e: stats[e]["float_agreement"])
    if stats[worst]["float_agreement"] < min_agreement:
        raise ExportRefused(
            f"exit{worst}: int8 chain agrees with the float model on only "
            f"{stats[worst]['float_agreement']:.2%} of the calibration split (< {min_agreement:.2%}); "
            "check the calibration data or lower min_agreement (--min-agreement)")

    write_npz(tmp / "calib.npz", x=raw_x["calibration"], y=splits.calibration.y.astype(np.int64))
    write_npz(tmp / "eval.npz", x=raw_x["evaluation"], y=splits.evaluation.y.astype(np.int64))

    block_entries = []
    for k, ((macs, params), seg) in enumerate(zip(block_costs, blocks)):
        block_entries.append({
            "index": k, "name": f"block{k}", "file": seg.path.name,
            "sha256": sha256_file(seg.path), "macs": int(macs), "params": int(params),
            "input": tensor_spec(seg.input), "output": tensor_spec(seg.output),
        })
    exit_entries = []
    for e, ((macs, params), (after, seg)) in enumerate(zip(head_costs, heads)):
        exit_entries.append({
            "index": e, "after_block": after, "file": seg.path.name,
            "sha256": sha256_file(seg.path), "macs": int(macs), "params": int(params),
            "input": tensor_spec(seg.input), "output": tensor_spec(seg.output),
            "confidence_output": tensor_spec(seg.confidence) if seg.confidence else None,
            "stats": stats[e],
        })
    in_scale, in_zp = _qparams(blocks[0].input)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "created_by": f"tools/export.py (edgeexit {edgeexit_version}, tensorflow {tf_version})",
        "input": {
            "shape": [1, *net.input_shape],
            "raw_dtype": raw_dtype,
            "preprocessing": {"scale": float(splits.preprocessing_scale),
                              "offset": float(splits.preprocessing_offset)},
            "dtype": "int8",
            "quantization": {"scale": in_scale, "zero_point": in_zp},
        },
        "blocks": block_entries,
        "exits": exit_entries,
        "num_classes": c,
        "labels": labels if labels is not None else [str(i) for i in range(c)],
        "splits": {
            "calibration": {"file": "calib.npz", "sha256": sha256_file(tmp / "calib.npz"),
                            "n": len(splits.calibration)},
            "evaluation": {"file": "eval.npz", "sha256": sha256_file(tmp / "eval.npz"),
                           "n": len(splits.evaluation)},
        },
        "training": {
            **training,
            "dataset": training.get("dataset", splits.dataset),
            "min_agreement": min_agreement,
            "eval_accuracy": eval_acc,
            "eval_float_agreement": eval_agree,
            "final_exit_eval_accuracy": eval_acc[-1],
        },
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
