"""Loaded int8 segments: one interpreter per block or exit head, tensors matched by name or shape."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from edgeexit.bundle.manifest import SegmentSpec, TensorSpec, same_quantization
from edgeexit.errors import BundleError
from edgeexit.interpreter import Backend, open_interpreter, tensor_spec

Requant = Callable[[np.ndarray], np.ndarray]


def make_requant(src: TensorSpec, dst: TensorSpec) -> Optional[Requant]:
    """None when int8 codes pass straight through; else an integer-domain requantizer (decided once)."""
    if src.same_quantization(dst):
        return None
    ratio = np.float32(src.scale / dst.scale)
    zin, zout = np.int32(src.zero_point), np.float32(dst.zero_point)
    info = np.iinfo(np.dtype(dst.dtype))
    lo, hi, dtype = info.min, info.max, np.dtype(dst.dtype)

    def requant(q: np.ndarray) -> np.ndarray:
        return np.clip(np.round((q.astype(np.int32) - zin) * ratio) + zout, lo, hi).astype(dtype)

    return requant


def _check(actual: Dict[str, Any], want: TensorSpec, where: str) -> None:
    """The manifest's spec against the interpreter's own tensor: the runtime quantizes inputs, requantizes
    between segments and decodes logits with the manifest's scale/zero-point, so an edited one would run
    without complaint and give garbage accuracy."""
    if list(actual["shape"]) != list(want.shape) or actual["dtype"] != want.dtype:
        raise BundleError(
            "{}: the .tflite tensor is {} {} but the manifest says {} {}; re-export the bundle".format(
                where, actual["shape"], actual["dtype"], want.shape, want.dtype
            )
        )
    if not same_quantization(want.scale, want.zero_point, actual["scale"], actual["zero_point"]):
        raise BundleError(
            "{}: the .tflite tensor is quantized with scale {!r}, zero_point {} but the manifest says scale {!r}, "
            "zero_point {}; correct manifest.json to match or re-export the bundle".format(
                where, actual["scale"], actual["zero_point"], want.scale, want.zero_point
            )
        )


def _match_output(details: List[Dict[str, Any]], want: TensorSpec, where: str, taken: List[int]) -> int:
    """Find an output by name, else by unique shape: never by list position."""
    specs = [(d["index"], tensor_spec(d)) for d in details if d["index"] not in taken]
    for index, spec in specs:
        if spec["name"] == want.name:
            _check(spec, want, where)
            return int(index)
    same = [(index, spec) for index, spec in specs if list(spec["shape"]) == list(want.shape) and spec["dtype"] == want.dtype]
    if len(same) == 1:
        _check(same[0][1], want, where)
        return int(same[0][0])
    raise BundleError(
        "{}: no output named '{}' or uniquely shaped {} in the .tflite; re-export the bundle".format(where, want.name, want.shape)
    )


class Segment:
    """One loaded segment. ``run`` is the hot path: set, invoke, get, nothing else."""

    __slots__ = ("spec", "interpreter", "in_index", "out_index", "conf_index", "set_tensor", "invoke", "get_tensor", "output")

    #: outputs at least this large are handed on as a view of the interpreter's buffer (one copy, into the
    #: next segment's input) instead of get_tensor's copy plus set_tensor's copy; smaller ones are cheaper
    #: to copy than to wrap (measured, see the LiteRT notes in docs).
    VIEW_BYTES = 16384

    def __init__(self, spec: SegmentSpec, path: Path, backend: Backend, num_threads: int) -> None:
        where = "bundle segment {} ({})".format(spec.label, spec.file)
        self.spec = spec
        it = open_interpreter(backend, path, num_threads)
        try:
            ins, outs = it.get_input_details(), it.get_output_details()
        except UnicodeDecodeError:  # the bundle check refuses such names: a second line of defence
            raise BundleError("{}: a tensor name is not UTF-8 text; re-export the bundle".format(where)) from None
        if len(ins) != 1:
            raise BundleError("{}: expected one input tensor, found {}; re-export the bundle".format(where, len(ins)))
        _check(tensor_spec(ins[0]), spec.input, where + " input")
        self.in_index = int(ins[0]["index"])
        self.out_index = _match_output(outs, spec.output, where + " output", [])
        self.conf_index = -1
        if spec.confidence_output is not None:
            self.conf_index = _match_output(outs, spec.confidence_output, where + " confidence", [self.out_index])
        self.interpreter = it
        # Bound methods cached: saves attribute lookups on every inference.
        self.set_tensor = it.set_tensor
        self.invoke = it.invoke
        self.get_tensor = it.get_tensor
        n_bytes = int(np.prod(spec.output.shape)) * np.dtype(spec.output.dtype).itemsize
        if spec.kind == "block" and n_bytes >= self.VIEW_BYTES:
            view = it.tensor(self.out_index)  # a function returning a fresh view of the output buffer
            self.output = view
        else:
            out_index = self.out_index
            get = it.get_tensor
            self.output = lambda: get(out_index)

    def run(self, x: np.ndarray) -> np.ndarray:
        self.set_tensor(self.in_index, x)
        self.invoke()
        return self.get_tensor(self.out_index)
