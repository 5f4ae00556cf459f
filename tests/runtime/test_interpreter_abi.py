"""A backend whose native part cannot import NumPy (tflite-runtime 2.14, built for NumPy 1.x, under NumPy 2)
fails when a model is loaded, not when it is imported; that must not be blamed on the model."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgeexit.errors import InterpreterError
from edgeexit.interpreter import Backend, open_interpreter

DEMO_SEGMENT = Path(__file__).resolve().parents[2] / "edgeexit" / "models" / "demo" / "block0.tflite"


class _NumpyAbiInterpreter:
    """What tflite-runtime 2.14's wrapper does under NumPy 2: its C++ side sets a SystemError whose context is
    the ImportError of numpy.core.multiarray."""

    def __init__(self, model_path: str, num_threads: int) -> None:
        try:
            raise ImportError("numpy.core.multiarray failed to import")
        except ImportError:
            raise SystemError("<built-in method CreateWrapperFromFile of PyCapsule object> returned a result with an "
                              "exception set")


class _CorruptModelInterpreter:
    def __init__(self, model_path: str, num_threads: int) -> None:
        raise ValueError("Could not open '{}'.".format(model_path))


def test_a_numpy_abi_failure_names_numpy_not_the_model() -> None:
    with pytest.raises(InterpreterError) as info:
        open_interpreter(Backend("tflite", "2.14.0", _NumpyAbiInterpreter), DEMO_SEGMENT)
    msg = str(info.value)
    assert "numpy.core.multiarray failed to import" in msg and "pip install 'numpy<2'" in msg
    assert "--interpreter litert" in msg and "re-export" not in msg and "\n" not in msg


def test_a_model_that_will_not_load_still_says_re_export() -> None:
    with pytest.raises(InterpreterError, match="is not a loadable TFLite model .*re-export the bundle"):
        open_interpreter(Backend("tflite", "2.14.0", _CorruptModelInterpreter), DEMO_SEGMENT)
