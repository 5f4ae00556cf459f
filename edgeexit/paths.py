"""Where edgeexit's shipped data lives, for source checkouts and (non-editable) installs alike."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgeexit.errors import OutputError


def _package_dir(modname: str) -> Path:
    import importlib

    try:
        mod = importlib.import_module(modname)
    except ImportError:
        # A source checkout used without installing: the data dirs sit beside the package.
        return Path(__file__).resolve().parent.parent / modname.rsplit(".", 1)[-1]
    return Path(mod.__file__).resolve().parent  # type: ignore[arg-type]


def board_configs_dir() -> Path:
    """Directory of the shipped board configs (``EDGEEXIT_BOARD_CONFIGS`` overrides it)."""
    env = os.environ.get("EDGEEXIT_BOARD_CONFIGS")
    return Path(env) if env else _package_dir("edgeexit.board_configs")


def firmware_profiles_dir() -> Path:
    """Directory of the shipped firmware profiles (``EDGEEXIT_FIRMWARE_PROFILES`` overrides it)."""
    env = os.environ.get("EDGEEXIT_FIRMWARE_PROFILES")
    return Path(env) if env else _package_dir("edgeexit.firmware_profiles")


def models_dir() -> Path:
    """Directory holding the bundled model bundles."""
    return _package_dir("edgeexit.models")


def demo_bundle_dir() -> Path:
    """The bundled demo bundle (an 8-exit CNN on MNIST digits)."""
    return models_dir() / "demo"


def runtime_dir() -> Path:
    """Where controller state files and locks live (``EDGEEXIT_RUNTIME_DIR`` overrides it).

    ``/run/edgeexit`` when running as root (survives a crash until reboot, as the board's clocks
    do), otherwise ``$XDG_RUNTIME_DIR/edgeexit`` or ``/tmp/edgeexit-<uid>``.
    """
    env = os.environ.get("EDGEEXIT_RUNTIME_DIR")
    if env:
        return Path(env)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/run/edgeexit")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "edgeexit"
    return Path("/tmp") / "edgeexit-{}".format(os.getuid())


def writable_output(path: Path, what: str, option: str, directory: bool = False) -> Path:
    """Create ``path`` (``directory``) or its folder and check it can be written, before any long work,
    so that a bad --out/--output fails at once in one line naming the option, not after the run."""
    path = Path(path)
    try:
        if not directory and path.is_dir():
            raise IsADirectoryError(21, "is a directory")
        folder = path if directory else path.parent
        folder.mkdir(parents=True, exist_ok=True)
        # Try it rather than ask os.access: root passes every access check, yet cannot create files in
        # /proc or on a read-only mount. An existing file is opened for append (never truncated).
        if directory:
            tempfile.TemporaryFile(dir=str(folder)).close()
        elif path.exists():
            open(str(path), "a").close()
        else:
            open(str(path), "x").close()
            os.unlink(str(path))
    except OSError as err:
        raise OutputError("cannot write {} to {} ({}); pass {} somewhere writable".format(
            what, path, err.strerror or err, option)) from None
    return path
