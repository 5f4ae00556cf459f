"""Sample files (npz with ``x`` and optional ``y``): reading, checking and quantizing to block 0's input."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from edgeexit.bundle.manifest import InputSpec
from edgeexit.errors import InputDataError


@dataclass
class Samples:
    """Raw samples and labels (``y`` is None when the file has none)."""

    x: np.ndarray
    y: Optional[np.ndarray]
    source: str

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, limit: Optional[int]) -> "Samples":
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


def read_samples(path: Path, spec: InputSpec, num_classes: int) -> Samples:
    """Read and check samples against the bundle's input spec: an .npz with x (and optionally y), or an
    .npy holding x alone."""
    try:
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
    except FileNotFoundError:
        raise InputDataError("input file {} does not exist; pass --input an existing .npz".format(path)) from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise InputDataError("{} is not a readable .npz ({}); write it with np.savez(path, x=..., y=...)".format(path, err)) from None
    check_samples(x, y, spec, num_classes, str(path))
    return Samples(x, None if y is None else y.astype(np.int64), str(path))


def check_samples(x: np.ndarray, y: Optional[np.ndarray], spec: InputSpec, num_classes: int, source: str) -> None:
    want = tuple(spec.shape[1:])
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise InputDataError(
            "{}: x has shape {} but the model takes (N, {}); reshape the samples to that".format(
                source, tuple(x.shape), ", ".join(map(str, want))
            )
        )
    if x.shape[0] == 0:
        raise InputDataError("{} holds no samples (x has shape {}); pass a file with at least one".format(source, tuple(x.shape)))
    if x.dtype != np.dtype(spec.raw_dtype):
        raise InputDataError(
            "{}: x has dtype {} but the model expects raw {} samples (preprocessing: x * {:g} + {:g}); convert with "
            "x.astype('{}')".format(source, x.dtype, spec.raw_dtype, spec.preprocess_scale, spec.preprocess_offset, spec.raw_dtype)
        )
    if y is not None:
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise InputDataError("{}: y has shape {} but x holds {} samples; give one label per sample".format(source, tuple(y.shape), x.shape[0]))
        if not np.issubdtype(y.dtype, np.integer) or (y.size and (y.min() < 0 or y.max() >= num_classes)):
            raise InputDataError("{}: y must be integer class indices in 0..{}; fix the labels".format(source, num_classes - 1))


def quantize_inputs(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Preprocess and quantize all samples at once to block 0's int8 input: shape (N, 1, ...)."""
    real = x.astype(np.float32) * np.float32(spec.preprocess_scale) + np.float32(spec.preprocess_offset)
    info = np.iinfo(np.dtype(spec.dtype))
    q = np.clip(np.round(real / np.float32(spec.scale)) + spec.zero_point, info.min, info.max)
    return q.astype(spec.dtype).reshape((x.shape[0],) + tuple(spec.shape))
