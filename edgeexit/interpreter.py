"""One small adapter over the two TFLite interpreter backends.

LiteRT (``ai_edge_litert``) is preferred where it has wheels (Python >= 3.10, glibc >= 2.27);
``tflite_runtime`` is the fallback (Python 3.8/3.9, armv7; needs numpy<2 and runs int8 without
XNNPACK). The two expose the same classic ``Interpreter`` API. Force one with
``--interpreter litert|tflite`` or ``EDGEEXIT_INTERPRETER``.
"""
from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from edgeexit.errors import InterpreterError

ENV_VAR = "EDGEEXIT_INTERPRETER"
BACKENDS = ("litert", "tflite")
_MODULES = {"litert": "ai_edge_litert", "tflite": "tflite_runtime"}
_INSTALL_HINT = {
    "litert": "pip install ai-edge-litert (Python >= 3.10, glibc >= 2.27)",
    "tflite": "pip install tflite-runtime 'numpy<2' (Python 3.8-3.11)",
}


@dataclass(frozen=True)
class Backend:
    """The interpreter backend in use."""

    name: str  # "litert" or "tflite"
    version: str
    interpreter_cls: Any


def _import_backend(name: str) -> Backend:
    modname = _MODULES[name]
    try:
        mod = importlib.import_module(modname + ".interpreter")
        pkg = importlib.import_module(modname)
    except ImportError as err:
        raise InterpreterError(
            "interpreter backend '{}' is not importable ({}); install it: {}".format(name, err, _INSTALL_HINT[name])
        ) from None
    version = str(getattr(pkg, "__version__", "unknown"))
    return Backend(name=name, version=version, interpreter_cls=mod.Interpreter)


def resolve_backend(requested: Optional[str] = None) -> Backend:
    """Pick the backend: the argument, else ``$EDGEEXIT_INTERPRETER``, else LiteRT, else tflite_runtime."""
    choice = (requested or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if choice in BACKENDS:
        return _import_backend(choice)
    if choice != "auto":
        raise InterpreterError(
            "unknown interpreter backend '{}' (from --interpreter or ${}); use one of: auto, {}".format(
                choice, ENV_VAR, ", ".join(BACKENDS)
            )
        )
    errors: List[str] = []
    for name in BACKENDS:
        try:
            return _import_backend(name)
        except InterpreterError as err:
            errors.append(err.message)
    raise InterpreterError("no TFLite interpreter is installed; " + " / ".join(_INSTALL_HINT.values()))


def tensor_spec(detail: Dict[str, Any]) -> Dict[str, Any]:
    """The parts of an interpreter tensor detail that a bundle manifest records."""
    qp = detail.get("quantization_parameters") or {}
    scales = qp.get("scales")
    zps = qp.get("zero_points")
    if scales is not None and len(scales) == 1:
        scale, zp = float(scales[0]), int(zps[0])
    else:
        scale, zp = float(detail["quantization"][0]), int(detail["quantization"][1])
    return {
        "name": str(detail["name"]),
        "shape": [int(d) for d in detail["shape"]],
        "dtype": str(detail["dtype"].__name__ if hasattr(detail["dtype"], "__name__") else detail["dtype"]),
        "scale": scale,
        "zero_point": zp,
    }


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence the C++ runtime's informational lines ("INFO: Created TensorFlow Lite XNNPACK delegate")
    while a segment loads, so edgeexit's own output stays one line per message. Python errors are
    still raised and reported by the caller."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def open_interpreter(backend: Backend, path: Path, num_threads: int = 1) -> Any:
    """Load and allocate one segment. ``num_threads`` is always passed explicitly (None means 1 anyway)."""
    try:
        with _quiet_native_stderr():
            it = backend.interpreter_cls(model_path=str(path), num_threads=int(num_threads))
            it.allocate_tensors()
    except (ValueError, RuntimeError, SystemError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InterpreterError(
            "{} is not a loadable TFLite model ({}); re-export the bundle with tools/export.py".format(path, first)
        ) from None
    return it
