"""Sample files (npz with ``x`` and optional ``y``): reading, checking and quantizing to block 0's input."""
from __future__ import annotations

import os
import stat
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Optional

import numpy as np
from numpy.lib import format as npy_format

from edgeexit.bundle.fileio import file_kind
from edgeexit.bundle.manifest import InputSpec
from edgeexit.errors import InputDataError
from edgeexit.jsonvalues import is_integer


@dataclass
class Samples:
    """Raw samples and labels (``y`` is None when the file has none)."""

    x: np.ndarray
    y: Optional[np.ndarray]
    source: str

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, limit: Optional[int]) -> "Samples":
        """The first ``limit`` samples (all of them for None)."""
        if limit is not None and (not is_integer(limit) or limit < 0):
            # a slice would read -1 as "all but the last" and 2.5 as a TypeError
            raise InputDataError("take({!r}): the limit must be a count of samples, an int of at least 0, or None for "
                                 "all".format(limit))
        if limit is None or limit >= len(self):
            return self
        return Samples(self.x[:limit], None if self.y is None else self.y[:limit], self.source)

    def require_labels(self, why: str) -> np.ndarray:
        if self.y is None:
            raise InputDataError(
                "{} has no labels ('y' array) but {} needs them; save the file with np.savez(path, x=..., y=...)".format(
                    self.source, why
                )
            )
        return self.y


NPY_MAGIC = b"\x93NUMPY"  # np.save
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # np.savez: a ZIP archive (the second: an empty one)
#: DEFLATE cannot compress better than about 1032:1, so a deflated member holds at most this many bytes per
#: compressed byte, whatever its header claims.
MAX_DEFLATE_RATIO = 1100
#: What np.load raises on a corrupt file besides OSError/ValueError: header parsing goes through tokenize and
#: ast (TokenError, SyntaxError, RecursionError), a torn ZIP member through zlib, an odd header through TypeError.
_CORRUPT = (OSError, ValueError, zipfile.BadZipFile, EOFError, tokenize.TokenError, SyntaxError, TypeError, KeyError,
            RecursionError, zlib.error, NotImplementedError, struct.error)
_SAVE_HOW = "save samples with np.savez(path, x=..., y=...) or np.save(path, x)"


def _first_line(err: BaseException) -> str:
    # numpy's messages can run over several lines (its max_header_size advice); ours are one line
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _array_problem(stream: IO[bytes], size_bytes: int) -> Optional[str]:
    """Why the .npy array in ``stream`` (``size_bytes`` long) must not be loaded, or None. np.load allocates
    what the header claims before reading any data: a 1 kB file claiming shape (10**12, 28, 28, 1) asked for
    713 TiB and died with a MemoryError traceback."""
    version = npy_format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = npy_format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = npy_format.read_array_header_2_0(stream)
    else:  # 3.0 (UTF-8 field names) has no public reader: np.load checks it, and MemoryError is caught below
        return None
    if dtype.hasobject:
        return "it holds Python objects (dtype {}), which edgeexit never unpickles; {}".format(dtype, _SAVE_HOW)
    need_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize  # Python ints: no overflow
    have_bytes = size_bytes - stream.tell()
    if need_bytes > have_bytes:
        return "its header claims shape {} of {} ({:,} bytes) but only {:,} bytes follow: the file is truncated or " \
               "corrupt; {}".format(tuple(shape), dtype, need_bytes, max(have_bytes, 0), _SAVE_HOW)
    return None


def _check_arrays(path: Path, head: bytes) -> Optional[str]:
    """Why the arrays of the .npy/.npz at ``path`` cannot be loaded, judged from their headers, or None."""
    if head.startswith(NPY_MAGIC):
        with open(str(path), "rb") as f:
            return _array_problem(f, os.fstat(f.fileno()).st_size)
    with zipfile.ZipFile(str(path)) as z:
        for info in z.infolist():
            if info.filename not in ("x.npy", "y.npy"):
                continue
            size = info.file_size  # what the archive claims: bounded by what the compressed bytes can hold
            if info.compress_type == zipfile.ZIP_STORED:
                size = min(size, info.compress_size)
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                size = min(size, info.compress_size * MAX_DEFLATE_RATIO + 1024)
            with z.open(info) as member:
                why = _array_problem(member, size)
            if why:
                return "{}: {}".format(info.filename[:-4], why)
    return None


def read_samples(path: Path, spec: InputSpec, num_classes: int) -> Samples:
    """Read and check samples against the bundle's input spec: an .npz with x (and optionally y), or an
    .npy holding x alone."""
    if not isinstance(spec, InputSpec) or isinstance(num_classes, bool) or not isinstance(num_classes, int):
        raise InputDataError("read_samples(path, spec, num_classes) takes the bundle's bundle.manifest.input and "
                             "bundle.manifest.num_classes, not a {} and a {}".format(type(spec).__name__,
                                                                                  type(num_classes).__name__))
    try:
        mode = os.stat(str(path)).st_mode
        head = b""
        if stat.S_ISREG(mode):
            with open(str(path), "rb") as f:
                head = f.read(len(NPY_MAGIC))
    except FileNotFoundError:
        raise InputDataError("input file {} does not exist; pass --input an existing .npz".format(path)) from None
    except OSError as err:
        raise InputDataError("cannot read {} ({}); pass --input a readable .npz".format(path, err.strerror or err)) from None
    if not stat.S_ISREG(mode):
        raise InputDataError("{} is {}, not a sample file; pass --input an .npz or .npy file".format(path, file_kind(mode)))
    if not head.startswith(NPY_MAGIC) and not head.startswith(ZIP_MAGICS):
        # np.load would try it as a pickle and advise allow_pickle=True: never the fix for a sample file
        what = "is empty" if not head else "is neither an .npz nor an .npy file (it lacks their ZIP or NumPy signature)"
        raise InputDataError("{} {}; {}".format(path, what, _SAVE_HOW))
    try:
        why = _check_arrays(path, head)
        if why:
            raise InputDataError("{}: {}".format(path, why))
        loaded = np.load(str(path), allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            check_samples(loaded, None, spec, num_classes, str(path))
            return Samples(loaded, None, str(path))
        with loaded as f:
            if "x" not in f.files:
                raise InputDataError(
                    "{} has no 'x' array (it has: {}); save samples with np.savez(path, x=..., y=...)".format(
                        path, ", ".join(f.files) or "nothing"
                    )
                )
            x = f["x"]
            y = f["y"] if "y" in f.files else None
    except InputDataError:
        raise
    except MemoryError as err:  # a header that fits the file but not this machine's memory
        raise InputDataError("{} needs more memory than is free ({}); pass fewer samples".format(path, _first_line(err))) from None
    except _CORRUPT as err:
        raise InputDataError("{} is not a readable .npz or .npy ({}); {}".format(path, _first_line(err), _SAVE_HOW)) from None
    check_samples(x, y, spec, num_classes, str(path))
    return Samples(x, None if y is None else y.astype(np.int64), str(path))


def check_given_samples(samples: Any, spec: InputSpec, num_classes: int) -> None:
    """Samples a caller built, checked as read_samples checks a file's (once per run): shape, dtype, finite values
    and labels in range. A run over no samples is allowed (it reports n = 0)."""
    if not isinstance(samples, Samples):
        raise InputDataError("samples must be a Samples, not {}; wrap arrays as Samples(x, y, source) (y may be "
                             "None), or read a file with edgeexit.bundle.read_samples".format(type(samples).__name__))
    src = samples.source
    for name, arr in (("x", samples.x), ("y", samples.y)):
        if arr is not None and not isinstance(arr, np.ndarray):
            raise InputDataError("{}: {} is a {}, not a numpy array; pass np.asarray({})".format(src, name, type(arr).__name__, name))
    check_samples(samples.x, samples.y, spec, num_classes, src, allow_empty=True)


def shape_problem(x: np.ndarray, spec: InputSpec) -> Optional[str]:
    """Why samples ``x`` are not (N, ...) of the model's input shape, or None."""
    want = tuple(spec.shape[1:])
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        return "x has shape {} but the model takes (N, {})".format(tuple(x.shape), ", ".join(map(str, want)))
    return None


def check_samples(x: np.ndarray, y: Optional[np.ndarray], spec: InputSpec, num_classes: int, source: str,
                  allow_empty: bool = False) -> None:
    problem = shape_problem(x, spec)
    if problem is not None:
        raise InputDataError("{}: {}; reshape the samples to that".format(source, problem))
    if x.shape[0] == 0 and not allow_empty:
        raise InputDataError("{} holds no samples (x has shape {}); pass a file with at least one".format(source, tuple(x.shape)))
    if x.dtype != np.dtype(spec.raw_dtype):
        raise InputDataError(
            "{}: x has dtype {} but the model expects raw {} samples (preprocessing: x * {:g} + {:g}); convert with "
            "x.astype('{}')".format(source, x.dtype, spec.raw_dtype, spec.preprocess_scale, spec.preprocess_offset, spec.raw_dtype)
        )
    if np.issubdtype(x.dtype, np.floating):
        # NaN casts to an arbitrary int8 code and inf clips to the edge, silently: refuse them here.
        bad = ~np.isfinite(x)
        count = int(np.count_nonzero(bad))
        if count:
            first = int(np.argmax(bad.reshape(x.shape[0], -1).any(axis=1)))
            raise InputDataError(
                "{}: x holds {:,} NaN/inf value{} (first at sample {}); clean the samples (replace or drop those "
                "samples) and save them again".format(source, count, "" if count == 1 else "s", first))
    if y is not None:
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise InputDataError("{}: y has shape {} but x holds {} samples; give one label per sample".format(source, tuple(y.shape), x.shape[0]))
        if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= num_classes)):
            raise InputDataError("{}: y must be integer class indices in 0..{}; fix the labels".format(source, num_classes - 1))


def quantize_inputs(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Preprocess and quantize all samples at once to block 0's int8 input: shape (N, 1, ...)."""
    if not isinstance(spec, InputSpec):
        raise InputDataError("spec must be the bundle's InputSpec (bundle.manifest.input), not a {}".format(
            type(spec).__name__))
    if not isinstance(x, np.ndarray) or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise InputDataError("x must be a numeric numpy array of samples, not a {}; pass np.asarray(x)".format(
            type(x).__name__ if not isinstance(x, np.ndarray) else "{} array".format(x.dtype)))
    problem = shape_problem(x, spec)
    if problem is not None:
        raise InputDataError("{}; one sample is x[None], more are reshaped to that".format(problem))
    real = x.astype(np.float32) * np.float32(spec.preprocess_scale) + np.float32(spec.preprocess_offset)
    info = np.iinfo(np.dtype(spec.dtype))
    q = np.clip(np.round(real / np.float32(spec.scale)) + spec.zero_point, info.min, info.max)
    return q.astype(spec.dtype).reshape((x.shape[0],) + tuple(spec.shape))
