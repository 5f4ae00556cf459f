"""The bundle manifest (docs/bundle-format.md) as dataclasses, parsed and checked strictly."""
from __future__ import annotations

import errno
import hashlib
import math
import os
import reprlib
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from edgeexit.bundle.fileio import file_kind, read_json
from edgeexit.bundle.flatbuffer import Broken, verify_tflite
from edgeexit.errors import BundleError
from edgeexit.jsonvalues import is_finite_number

SCHEMA_VERSIONS = (1,)
_FIX = "re-export the bundle with tools/export.py"


#: Relative tolerance between a manifest scale and the .tflite's own: both are the same float32, so any
#: real difference is an edit (JSON keeps a float exactly).
SCALE_RTOL = 1e-6


def same_quantization(scale: float, zero_point: int, other_scale: float, other_zero_point: int) -> bool:
    return zero_point == other_zero_point and abs(scale - other_scale) <= SCALE_RTOL * abs(other_scale)


@dataclass(frozen=True)
class TensorSpec:
    """One segment input or output as recorded in the manifest."""

    name: str
    shape: List[int]
    dtype: str
    scale: float
    zero_point: int

    def same_layout(self, other: "TensorSpec") -> bool:
        return list(self.shape) == list(other.shape) and self.dtype == other.dtype

    def same_quantization(self, other: "TensorSpec") -> bool:
        # Exporter-calibrated chains agree to ~1e-7 relative; anything more needs requantization.
        return self.zero_point == other.zero_point and abs(self.scale - other.scale) <= 1e-5 * abs(other.scale)


@dataclass(frozen=True)
class SegmentSpec:
    """A block or exit-head segment: its file, cost and tensors."""

    kind: str  # "block" or "exit"
    index: int
    file: str
    sha256: str
    macs: int
    params: int
    input: TensorSpec
    output: TensorSpec
    after_block: int = -1  # exits only
    confidence_output: Optional[TensorSpec] = None  # PTEENet-style confidence head
    stats: Dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "{}{}".format(self.kind, self.index)


@dataclass(frozen=True)
class InputSpec:
    shape: List[int]
    raw_dtype: str
    preprocess_scale: float
    preprocess_offset: float
    dtype: str
    scale: float
    zero_point: int


@dataclass(frozen=True)
class SplitSpec:
    file: str
    sha256: str
    n: int


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    name: str
    input: InputSpec
    blocks: List[SegmentSpec]
    exits: List[SegmentSpec]
    num_classes: int
    labels: List[str]
    splits: Dict[str, SplitSpec]
    training: Dict[str, Any]
    raw: Dict[str, Any]


class _Reader:
    """Typed access to nested JSON with errors that name the key path."""

    def __init__(self, data: Any, where: str) -> None:
        self.data = data
        self.where = where

    def _get(self, key: str) -> Any:
        if not isinstance(self.data, dict):
            raise BundleError("manifest.json: '{}' must be an object, got {}; {}".format(
                self.where.rstrip(".") or "the top level", reprlib.repr(self.data), _FIX))
        if key not in self.data:
            raise BundleError("manifest.json: missing key '{}{}'; {}".format(self.where, key, _FIX))
        return self.data[key]

    def sub(self, key: str) -> "_Reader":
        return _Reader(self._get(key), "{}{}.".format(self.where, key))

    def known(self, keys: Sequence[str]) -> "_Reader":
        """Refuse a key nothing reads: a misspelt optional key (``confidence_outputs``) would silently drop
        what it names."""
        if isinstance(self.data, dict):
            unknown = sorted(k for k in self.data if k not in keys)
            if unknown:
                raise BundleError("manifest.json: unknown key '{}{}' (known here: {}); correct its spelling or remove "
                                  "it".format(self.where, unknown[0], ", ".join(sorted(keys))))
        return self

    def items(self, key: str) -> List["_Reader"]:
        value = self._get(key)
        if not isinstance(value, list):
            raise BundleError("manifest.json: '{}{}' must be a list; {}".format(self.where, key, _FIX))
        return [_Reader(v, "{}{}[{}].".format(self.where, key, i)) for i, v in enumerate(value)]

    def typed(self, key: str, kind: Any, optional: bool = False) -> Any:
        if optional and (not isinstance(self.data, dict) or self.data.get(key) is None):
            return None
        value = self._get(key)
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            ok = is_finite_number(value)  # 10**400 parses as JSON, but float() raises OverflowError on it
            value = float(value) if ok else value
        if not ok:
            raise BundleError(
                "manifest.json: '{}{}' must be {}, got {!r}; {}".format(self.where, key, kind.__name__, value, _FIX)
            )
        return value


def _mapping(value: Any, where: str) -> Dict[str, Any]:
    """An optional JSON object (``stats``, ``training``): absent/null is empty, anything else an error."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BundleError("manifest.json: '{}' must be an object, got {!r}; {}".format(where, value, _FIX))
    return dict(value)


def _scale(r: _Reader, key: str = "scale") -> float:
    """A quantization scale: NaN, zero or a negative scale would dequantize every tensor to garbage."""
    value = r.typed(key, float)
    if not (math.isfinite(value) and value > 0.0):
        raise BundleError("manifest.json: '{}{}' must be a finite number > 0, got {!r}; correct manifest.json or {}".format(
            r.where, key, value, _FIX))
    return value


#: Bound on the raw-sample preprocessing (x * scale + offset). Real pipelines use scales like 1/255 and offsets
#: like -0.5; a scale of 1e308 passed the finite check and turned every sample into inf (garbage, numpy warnings).
MAX_PREPROCESS = 1e6
#: Bound on a segment's MACs and parameters: 1e15 MACs is hours per inference on any board, and the run's MAC
#: sums stay exact in int64 and float64 well beyond it.
MAX_MACS = 10 ** 15


def _bounded(r: _Reader, key: str, low: float, high: float, low_open: bool = False) -> float:
    """A finite number within [low, high] (or (low, high] with ``low_open``)."""
    value = r.typed(key, float)
    if not (math.isfinite(value) and (value > low if low_open else value >= low) and value <= high):
        raise BundleError("manifest.json: '{}{}' must be a finite number {} {:g} and <= {:g}, got {!r}; correct "
                          "manifest.json or {}".format(r.where, key, ">" if low_open else ">=", low, high, value, _FIX))
    return value


def _count(r: _Reader, key: str) -> int:
    """A MAC or parameter count: a non-negative integer (a negative one made a run report negative mean MACs)."""
    value = r.typed(key, int)
    if not 0 <= value <= MAX_MACS:
        raise BundleError("manifest.json: '{}{}' must be an integer from 0 to {:.0e}, got {!r}; correct manifest.json "
                          "or {}".format(r.where, key, MAX_MACS, value, _FIX))
    return value


def _dtype(r: _Reader, key: str, kinds: tuple, example: str, default: Optional[str] = None) -> str:
    """A numpy dtype name of one of ``kinds`` (``default`` where the key is absent and one is given); anything
    else would only fail (TypeError) once samples are read."""
    if default is not None and isinstance(r.data, dict) and key not in r.data:
        return default
    value = r.typed(key, str)
    try:
        ok = any(np.issubdtype(np.dtype(value), k) for k in kinds)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise BundleError("manifest.json: '{}{}' is {!r}, not a dtype such as '{}'; correct manifest.json or {}".format(
            r.where, key, value, example, _FIX))
    return value


#: The only segment tensor dtype: the policies decode int8 logits (a 256-entry table) and the runtime passes int8
#: codes between segments. An int16 bundle passed every other check and crashed with an IndexError traceback.
SEGMENT_DTYPE = "int8"


def _int8(r: _Reader, key: str) -> str:
    """A segment tensor's (or block 0's input's) dtype, which must be int8."""
    value = r.typed(key, str)
    if value != SEGMENT_DTYPE:
        raise BundleError("manifest.json: '{}{}' is {!r}, but edgeexit runs int8 segments only (int8 in, int8 out); "
                          "re-export the bundle with the int8 exporter (tools/export.py)".format(r.where, key, value))
    return value


def _shape(r: _Reader) -> List[int]:
    """A tensor shape: positive integers (true and 1.0 compare equal to 1, and crashed numpy later)."""
    shape = r.typed("shape", list)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise BundleError("manifest.json: '{}shape' must be positive integers, got {}; {}".format(r.where, shape, _FIX))
    return shape


def _labels(r: _Reader) -> List[str]:
    """The class names: strings (a null or a list printed as a label)."""
    labels = r.typed("labels", list)
    bad = [x for x in labels if not isinstance(x, str)]
    if bad:
        raise BundleError("manifest.json: 'labels' must be strings, got {!r}; {}".format(bad[0], _FIX))
    return labels


def _tensor(r: _Reader) -> TensorSpec:
    r.known(("name", "shape", "dtype", "scale", "zero_point"))
    return TensorSpec(
        name=r.typed("name", str),
        shape=_shape(r),
        dtype=_int8(r, "dtype"),
        scale=_scale(r),
        zero_point=r.typed("zero_point", int),
    )


#: what manifest.json may hold at its top level (``training`` is free-form)
MANIFEST_KEYS = ("schema_version", "name", "created_by", "input", "blocks", "exits", "num_classes", "labels", "splits",
                 "training")
#: what a block or exit entry may hold (``stats`` is free-form; exits add after_block and confidence_output)
SEGMENT_KEYS = ("index", "name", "file", "sha256", "macs", "params", "input", "output", "stats")


def _segment(r: _Reader, kind: str) -> SegmentSpec:
    r.known(SEGMENT_KEYS + (("after_block", "confidence_output") if kind == "exit" else ()))
    conf = r.data.get("confidence_output") if isinstance(r.data, dict) else None
    return SegmentSpec(
        kind=kind,
        index=r.typed("index", int),
        file=r.typed("file", str),
        sha256=r.typed("sha256", str),
        macs=_count(r, "macs"),
        params=_count(r, "params"),
        input=_tensor(r.sub("input")),
        output=_tensor(r.sub("output")),
        after_block=r.typed("after_block", int) if kind == "exit" else -1,
        confidence_output=_tensor(r.sub("confidence_output")) if conf is not None else None,
        stats=_mapping(r.data.get("stats"), r.where + "stats"),
    )


def parse_manifest(data: Any) -> Manifest:
    """Parse manifest JSON into a :class:`Manifest`, checking every key it needs."""
    r = _Reader(data, "")
    version = r.typed("schema_version", int)
    if version not in SCHEMA_VERSIONS:
        raise BundleError(
            "manifest.json: unknown schema_version {} (this edgeexit reads {}); upgrade edgeexit or re-export the "
            "bundle".format(version, ", ".join(map(str, SCHEMA_VERSIONS)))
        )
    # after the version: a newer format's new keys are the version's news, not misspellings
    r.known(MANIFEST_KEYS)
    inp = r.sub("input").known(("shape", "raw_dtype", "preprocessing", "dtype", "quantization"))
    pre = inp.sub("preprocessing").known(("scale", "offset"))
    q = inp.sub("quantization").known(("scale", "zero_point"))
    input_spec = InputSpec(
        shape=_shape(inp),
        raw_dtype=_dtype(inp, "raw_dtype", (np.integer, np.floating), "uint8", default="uint8"),  # optional (bundle-format.md)
        preprocess_scale=_bounded(pre, "scale", 0.0, MAX_PREPROCESS, low_open=True),
        preprocess_offset=_bounded(pre, "offset", -MAX_PREPROCESS, MAX_PREPROCESS),
        dtype=_int8(inp, "dtype"),
        scale=_scale(q),
        zero_point=q.typed("zero_point", int),
    )
    blocks = [_segment(b, "block") for b in r.items("blocks")]
    exits = [_segment(e, "exit") for e in r.items("exits")]
    splits = {
        name: SplitSpec(file=s.typed("file", str), sha256=s.typed("sha256", str), n=s.typed("n", int))
        for name, s in ((k, r.sub("splits").sub(k).known(("file", "sha256", "n"))) for k in sorted(r.typed("splits", dict)))
    }
    labels = _labels(r)
    return Manifest(
        schema_version=version,
        name=r.typed("name", str),
        input=input_spec,
        blocks=blocks,
        exits=exits,
        num_classes=r.typed("num_classes", int),
        labels=list(labels),
        splits=splits,
        training=_mapping(data.get("training"), "training"),
        raw=data,
    )


def check_structure(m: Manifest) -> None:
    """Indices, exit placement and the declared tensor chain (real tensors are checked at load)."""
    if not m.blocks:
        raise BundleError("manifest.json: the bundle has no blocks; {}".format(_FIX))
    if not m.exits:
        raise BundleError("manifest.json: the bundle has no exits; {}".format(_FIX))
    for i, b in enumerate(m.blocks):
        if b.index != i:
            raise BundleError("manifest.json: blocks[{}] has index {}; blocks must be numbered 0..N-1 in order".format(i, b.index))
    last = -1
    for i, e in enumerate(m.exits):
        if e.index != i:
            raise BundleError("manifest.json: exits[{}] has index {}; exits must be numbered 0..E-1 in order".format(i, e.index))
        if not 0 <= e.after_block < len(m.blocks) or e.after_block <= last:
            raise BundleError(
                "manifest.json: exit {} sits after block {}; exits need increasing after_block within 0..{}".format(
                    i, e.after_block, len(m.blocks) - 1
                )
            )
        last = e.after_block
    if m.exits[-1].after_block != len(m.blocks) - 1:
        raise BundleError("manifest.json: the last block has no exit (the final classifier); {}".format(_FIX))
    if sum(b.macs for b in m.blocks) + m.exits[-1].macs <= 0:
        # The full path's MACs are what every MAC saving is a fraction of: zero divided by zero in the summary.
        raise BundleError("manifest.json: the blocks and the final exit have 0 MACs in all; give each segment its "
                          "multiply-accumulate count ('macs'); {}".format(_FIX))
    cal, ev = m.splits.get("calibration"), m.splits.get("evaluation")
    if cal is not None and ev is not None and (cal.file == ev.file or cal.sha256 == ev.sha256):
        # every figure on the evaluation split would be in-sample: calibration meets its targets there by construction
        raise BundleError("manifest.json: the calibration and evaluation splits are the same samples ({}); point "
                          "splits.evaluation at samples calibration never sees, or {}".format(ev.file, _FIX))
    if len(m.labels) != m.num_classes:
        raise BundleError("manifest.json: {} labels for num_classes={}; {}".format(len(m.labels), m.num_classes, _FIX))
    if list(m.input.shape) != list(m.blocks[0].input.shape) or m.input.dtype != m.blocks[0].input.dtype:
        raise BundleError("manifest.json: input shape/dtype does not match block0's input; {}".format(_FIX))
    b0 = m.blocks[0].input
    if not same_quantization(m.input.scale, m.input.zero_point, b0.scale, b0.zero_point):
        # Samples are quantized with input.quantization and fed to block 0 as they are.
        raise BundleError(
            "manifest.json: input.quantization (scale {!r}, zero_point {}) differs from blocks[0].input (scale {!r}, "
            "zero_point {}); correct manifest.json or {}".format(m.input.scale, m.input.zero_point, b0.scale, b0.zero_point, _FIX))
    for a, b in zip(m.blocks, m.blocks[1:]):
        if not a.output.same_layout(b.input):
            raise BundleError(
                "manifest.json: block{} outputs {} {} but block{} takes {} {}: the blocks do not chain; {}".format(
                    a.index, a.output.shape, a.output.dtype, b.index, b.input.shape, b.input.dtype, _FIX
                )
            )
    for e in m.exits:
        src = m.blocks[e.after_block].output
        if not src.same_layout(e.input):
            raise BundleError(
                "manifest.json: exit{} takes {} {} but block{} outputs {} {}; {}".format(
                    e.index, e.input.shape, e.input.dtype, e.after_block, src.shape, src.dtype, _FIX
                )
            )
        if e.output.shape != [1, m.num_classes]:
            raise BundleError(
                "manifest.json: exit{} outputs shape {}, expected [1, {}] logits; {}".format(
                    e.index, e.output.shape, m.num_classes, _FIX
                )
            )


def resolve_inside(root: Path, relpath: str, what: str) -> Path:
    """Resolve a manifest path, refusing anything that escapes the bundle directory."""
    try:
        if "\x00" in relpath:  # os calls refuse it with a bare ValueError ("embedded null byte")
            raise ValueError("a NUL character")
        candidate = (root / relpath).resolve()
        base = root.resolve()
    except (ValueError, OSError, RuntimeError) as err:  # RuntimeError: a symlink loop (Python < 3.13)
        raise BundleError("manifest.json: {} path {!r} is not a usable file name ({}); correct manifest.json or {}".format(
            what, relpath, err, _FIX)) from None
    if Path(relpath).is_absolute():
        raise BundleError("manifest.json: {} path '{}' is absolute; use a path relative to the bundle directory {}"
                          .format(what, relpath, root))
    if candidate != base and base not in candidate.parents:
        raise BundleError("manifest.json: {} path '{}' escapes the bundle directory {}; use a path inside it".format(what, relpath, root))
    return candidate


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def what_is_there(path: Path) -> Optional[str]:
    """None for a regular file; else what is there instead, in words ("missing", "a directory", ...)."""
    try:
        mode = os.stat(str(path)).st_mode
    except OSError as err:
        if err.errno == errno.ENOENT:
            return "missing"
        if err.errno in (errno.EACCES, errno.EPERM):
            return "not readable by this user ({}): check its permissions".format(err.strerror)
        return "unreadable ({})".format(err.strerror)
    return None if stat.S_ISREG(mode) else file_kind(mode)


def verify_file(root: Path, relpath: str, sha256: str, what: str, tflite: bool = False) -> Path:
    """The file's path, once it is there, inside the bundle and of its sha256. ``tflite``: a segment, read once
    and also checked to be a whole TFLite FlatBuffer (flatbuffer.py) before calibration.json is read: a damaged
    segment whose sha256 was updated with it read as a stale calibration first, and tflite-runtime crashed
    (SIGSEGV) opening one cut short."""
    path = resolve_inside(root, relpath, what)
    data = b""
    try:
        there = what_is_there(path)
        if there is not None:
            raise BundleError("bundle {}: {} file '{}' is {}; restore it or re-export the bundle".format(root, what, relpath, there))
        if tflite:  # a segment is small: its bytes serve the hash and the structure check
            data = path.read_bytes()
            actual = hashlib.sha256(data).hexdigest()
        else:
            actual = sha256_file(path)
    except OSError as err:  # unreadable, or a name the file system refuses (too long)
        raise BundleError("bundle {}: cannot read {} file {!r} ({}); correct manifest.json or restore the file".format(
            root, what, relpath, err.strerror or err)) from None
    if actual != sha256.lower():
        raise BundleError(
            "bundle {}: {} file '{}' has sha256 {}… but the manifest says {}…: the file is corrupt or was replaced; "
            "re-export the bundle".format(root, what, relpath, actual[:12], sha256[:12])
        )
    if tflite:
        try:
            verify_tflite(data)
        except Broken as why:
            raise BundleError("bundle {}: {} file '{}' is not a whole TFLite model ({}); re-export the bundle with "
                              "tools/export.py".format(root, what, relpath, why)) from None
    return path


def read_manifest_json(root: Path) -> Any:
    path = root / "manifest.json"
    if not root.is_dir():
        raise BundleError("model bundle '{}' is not a directory; pass --model DIR with a manifest.json inside".format(root))
    there = what_is_there(path)
    if there == "missing":
        raise BundleError("'{}' has no manifest.json; pass --model a bundle directory made by tools/export.py".format(root))
    if there is not None:
        raise BundleError("{} is {}, not a manifest; pass --model a bundle directory made by tools/export.py".format(path, there))
    return read_json(path, lambda why: BundleError("{} is not valid JSON ({}); re-export the bundle".format(path, why)))
