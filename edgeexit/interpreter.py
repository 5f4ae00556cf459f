"""One small adapter over the two TFLite interpreter backends.

LiteRT (``ai_edge_litert``) is preferred where it has wheels (Python >= 3.10, glibc >= 2.27);
``tflite_runtime`` is the fallback (Python 3.8/3.9, armv7; needs numpy<2 and runs int8 without
XNNPACK). The two expose the same classic ``Interpreter`` API. Force one with
``--interpreter litert|tflite`` or ``EDGEEXIT_INTERPRETER``.
"""
from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
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


def _interrupted(err: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in ``err``'s chain: a Ctrl-C that lands in an extension module's
    init (numpy's, the interpreter wrapper's) comes out of the import as an ImportError."""
    seen = set()  # type: Set[int]
    e = err  # type: Optional[BaseException]
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


@contextmanager
def _noting_interrupts() -> Iterator[List[int]]:
    """Note each SIGINT that arrives meanwhile (and hand it to the handler in place), so that an import
    that a Ctrl-C broke is told from a missing package even where the extension dropped the chain."""
    seen = []  # type: List[int]
    if threading.current_thread() is not threading.main_thread():
        yield seen  # signal handlers belong to the main thread
        return
    old = signal.getsignal(signal.SIGINT)

    def note(signum: int, frame: Any) -> None:
        seen.append(signum)
        if callable(old):
            old(signum, frame)
        elif old != signal.SIG_IGN:
            raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, note)
    except (ValueError, OSError):
        yield seen
        return
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, old)


def _import_backend(name: str) -> Backend:
    modname = _MODULES[name]
    with _noting_interrupts() as interrupts:
        try:
            mod = importlib.import_module(modname + ".interpreter")
            pkg = importlib.import_module(modname)
        except ImportError as err:
            if interrupts or _interrupted(err):
                # Ctrl-C, not a missing backend: stop as a Ctrl-C does, not with "install it"
                raise KeyboardInterrupt from None
            raise InterpreterError(
                "interpreter backend '{}' is not importable ({}); install it: {}".format(name, err, _INSTALL_HINT[name])
            ) from None
    version = str(getattr(pkg, "__version__", "unknown"))
    return Backend(name=name, version=version, interpreter_cls=mod.Interpreter)


def resolve_backend(requested: Optional[str] = None) -> Backend:
    """Pick the backend: the argument, else ``$EDGEEXIT_INTERPRETER``, else LiteRT, else tflite_runtime."""
    if requested is not None and not isinstance(requested, str):
        raise InterpreterError("interpreter={!r} is not a backend name; use one of: auto, {}".format(
            requested, ", ".join(BACKENDS)))
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


def _import_failure(err: BaseException) -> Optional[str]:
    """The first line of an ImportError behind ``err`` (its cause or context, however deep), or None."""
    seen = set()
    e = err.__cause__ or err.__context__  # type: Optional[BaseException]
    while e is not None and id(e) not in seen:
        if isinstance(e, ImportError):
            text = str(e).strip()
            return text.splitlines()[0] if text else type(e).__name__
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _numpy_version() -> str:
    import numpy

    return str(numpy.__version__)


def open_interpreter(backend: Backend, path: Path, num_threads: int = 1) -> Any:
    """Load and allocate one segment. ``num_threads`` is always passed explicitly (None means 1 anyway)."""
    try:
        with _quiet_native_stderr():
            it = backend.interpreter_cls(model_path=str(path), num_threads=int(num_threads))
            it.allocate_tensors()
    except (ValueError, RuntimeError, SystemError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        abi = _import_failure(err)
        if abi is not None:
            # tflite-runtime <= 2.14 was built against NumPy 1.x: under NumPy 2 it imports, then fails here
            raise InterpreterError(
                "{} {} could not load {} because its native part failed to import NumPy {} ({}); it needs NumPy 1.x: "
                "pip install 'numpy<2', or use --interpreter litert".format(
                    backend.name, backend.version, path.name, _numpy_version(), abi)) from None
        raise InterpreterError(
            "{} is not a loadable TFLite model ({}); re-export the bundle with tools/export.py".format(path, first)
        ) from None
    return it
