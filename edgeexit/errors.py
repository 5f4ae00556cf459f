"""One exception tree for edgeexit.

Every message says what went wrong *and how to fix it*; the CLI prints the message as one line
and exits non-zero, with no traceback. Leaves also inherit the matching built-in exception so
callers can catch either (gpiozero's pattern).
"""
from __future__ import annotations

import sys


def warn_stderr(msg: str) -> None:
    """One warning line on stderr; the library's default where a caller passes no ``warn``."""
    sys.stderr.write("edgeexit: warning: {}\n".format(msg))
    sys.stderr.flush()


class EdgeExitError(Exception):
    """Base class of every error edgeexit raises on purpose."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- models and data -------------------------------------------------------------------------
class BundleError(EdgeExitError, ValueError):
    """A model bundle is missing, corrupt or inconsistent."""


class InputDataError(EdgeExitError, ValueError):
    """Input samples do not match the bundle's input spec, or cannot be read."""


class InterpreterError(EdgeExitError, RuntimeError):
    """No usable TFLite interpreter backend, or a segment failed to load or run."""


class CalibrationError(EdgeExitError, ValueError):
    """Thresholds or the forecaster cannot be fitted, or a bundle lacks calibration."""


class PolicyError(EdgeExitError, ValueError):
    """An unknown exit policy or DVFS mode, a policy that cannot run on this bundle, or run settings (deadline,
    period, threads) that cannot run together."""


# --- boards and DVFS -------------------------------------------------------------------------
class BoardConfigError(EdgeExitError, ValueError):
    """A board config or firmware profile file is invalid, or a board name is unknown."""


class BoardDetectError(EdgeExitError, LookupError):
    """``--board auto`` could not tell which board this is."""


class DvfsError(EdgeExitError, OSError):
    """A cpufreq/devfreq node could not be read or written."""


class SysfsPermissionError(DvfsError, PermissionError):
    """Writing a sysfs node needs privileges this process does not have."""


class BoardBusyError(DvfsError):
    """Another edgeexit process holds this board's lock."""


class StateFileError(DvfsError):
    """The saved-state file is unreadable or does not match the board."""


class ThermalError(EdgeExitError, RuntimeError):
    """Thermal zones cannot be read or the board is too hot to proceed."""


# --- energy ----------------------------------------------------------------------------------
class MeterError(EdgeExitError, RuntimeError):
    """A power meter failed."""


class SensorMissingError(MeterError, LookupError):
    """The board has no power sensor of the kind asked for, or the instrument is not attached."""


# --- outputs ---------------------------------------------------------------------------------
class OutputError(EdgeExitError, OSError):
    """An output file or folder (--output, --out) cannot be written; checked before the long work starts."""


# --- profiling -------------------------------------------------------------------------------
class ProfileError(EdgeExitError, RuntimeError):
    """`edgeexit profile` cannot profile as asked, or cannot write its profile."""


# --- reliability guards ----------------------------------------------------------------------
class RestoreConflictError(StateFileError):
    """A killed run's saved state would overwrite settings someone else made since; not restored."""
