"""Where edgeexit's shipped data lives, for source checkouts and (non-editable) installs alike."""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

from edgeexit.errors import OutputError, StateFileError


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
    do), otherwise ``/tmp/edgeexit-<uid>``. Never ``$XDG_RUNTIME_DIR``: that is private (0700) by
    design, and every user's board lock must be visible to every other user's runs, or two users
    pin one board at once (see edgeexit.dvfs.state). :func:`prepare_runtime_dir` creates it.
    """
    env = os.environ.get("EDGEEXIT_RUNTIME_DIR")
    if env:
        return Path(env)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/run/edgeexit")
    return Path("/tmp") / "edgeexit-{}".format(os.geteuid())


def prepare_runtime_dir() -> Path:
    """Create :func:`runtime_dir` readable by all (0755, whatever the umask: other users' runs read the
    board locks in it) and check that it is ours: a directory owned by this user and writable by no one
    else (anyone can create ``/tmp/edgeexit-<your uid>`` before you do). An existing directory of ours
    is made 0755 too (an older edgeexit, or a umask of 077, left it 0700). An ``EDGEEXIT_RUNTIME_DIR``
    that already exists is the user's own choice and is left as it is."""
    d = runtime_dir()
    overridden = bool(os.environ.get("EDGEEXIT_RUNTIME_DIR"))
    existed = os.path.lexists(str(d))
    try:
        d.mkdir(parents=True, exist_ok=True, mode=0o755)
        st = os.lstat(str(d))
    except OSError as err:
        raise StateFileError("cannot create the runtime directory {} ({}); set EDGEEXIT_RUNTIME_DIR to a directory "
                             "you can write".format(d, err.strerror or err)) from None
    if overridden and existed:
        return d
    uid = os.geteuid()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        raise StateFileError(
            "runtime directory {} is not a directory owned by you (uid {}) and writable by you alone (it is {}, "
            "owner uid {}, mode {:o}), so its locks and saved clocks cannot be trusted; remove it (`sudo rm -r {}`) "
            "or set EDGEEXIT_RUNTIME_DIR to a directory of your own".format(
                d, uid, "a directory" if stat.S_ISDIR(st.st_mode) else "not a directory", st.st_uid,
                stat.S_IMODE(st.st_mode), d))
    if stat.S_IMODE(st.st_mode) != 0o755:
        try:
            os.chmod(str(d), 0o755)
        except OSError as err:
            raise StateFileError("cannot make the runtime directory {} readable by all ({}), so other users' runs "
                                 "would not see this board's lock; `chmod 755 {}`".format(
                                     d, err.strerror or err, d)) from None
    return d


def missing_folders(folder: Path) -> List[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first: what a
    ``mkdir(parents=True)`` would make, for :func:`remove_folders` to take back."""
    return [p for p in [folder] + list(folder.parents) if not os.path.lexists(str(p))]


def remove_folders(made: List[Path]) -> None:
    """Remove folders from :func:`missing_folders`, deepest first, while they are empty."""
    for p in made:
        try:
            os.rmdir(str(p))
        except OSError:
            break


def _output_target(path: Path) -> Path:
    """The file a write to ``path`` lands in: ``path`` itself, or the target of a dangling symlink (open() and
    :func:`edgeexit.bundle.fileio.replace_file` both create it). A symlink loop raises ELOOP here."""
    if os.path.islink(str(path)):
        try:
            os.stat(str(path))
        except FileNotFoundError:
            return Path(os.path.realpath(str(path)))
    return path


def _try_open_existing(path: Path) -> None:
    """Open an existing ``path`` for append (never truncated) without ever blocking: a FIFO that no process
    reads would block open() forever, so non-regular files are opened with O_NONBLOCK."""
    mode = os.stat(str(path)).st_mode
    if stat.S_ISREG(mode):
        open(str(path), "a").close()
        return
    try:
        fd = os.open(str(path), os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
    except OSError as err:
        if err.errno == errno.ENXIO and stat.S_ISFIFO(mode):
            raise OSError(errno.ENXIO, "it is a FIFO (named pipe) that no process is reading") from None
        raise
    os.close(fd)


def writable_output(path: Path, what: str, option: str, directory: bool = False, keep: bool = False) -> Path:
    """Check that ``path`` (``directory``) or a file in its folder can be written, before any long work, so
    that a bad --out/--output fails at once in one line naming the option, not after the run. Folders made
    for the check are removed again unless ``keep`` (the writer makes them): a run that fails later leaves none
    behind. A dangling symlink is checked at its target (the write creates it), a symlink loop is refused as
    one, and a FIFO is never opened in a way that blocks."""
    path = Path(path)
    made = []  # type: List[Path]
    try:
        target = path if directory else _output_target(path)
        folder = target if directory else target.parent
        made = [] if keep else missing_folders(folder)
        if not directory and target.is_dir():
            raise IsADirectoryError(21, "is a directory")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            # mkdir says "File exists" when a regular file stands where a folder should: name that file
            bad = next((p for p in [folder] + list(folder.parents) if os.path.lexists(str(p)) and not p.is_dir()), folder)
            raise NotADirectoryError(errno.ENOTDIR, "{} is not a directory".format(bad)) from None
        # Try it rather than ask os.access: root passes every access check, yet cannot create files in
        # /proc or on a read-only mount. An existing file is opened for append (never truncated).
        if directory:
            tempfile.TemporaryFile(dir=str(folder)).close()
        elif os.path.lexists(str(target)):
            _try_open_existing(target)
        else:
            open(str(target), "x").close()
            os.unlink(str(target))
    except OSError as err:
        why = err.strerror or str(err)
        if err.errno == errno.ELOOP:
            why += ": a symlink loop"
        raise OutputError("cannot write {} to {} ({}); pass {} somewhere writable".format(
            what, path, why, option)) from None
    finally:
        remove_folders(made)
    return path


def _same_file(a: Path, b: Path) -> bool:
    """Whether writing ``a`` would write ``b``: the same path once symlinks are resolved, or a hard link."""
    ra, rb = os.path.realpath(str(a)), os.path.realpath(str(b))
    if ra == rb:
        return True
    try:
        return os.path.samefile(ra, rb)
    except OSError:  # either is missing: only the resolved paths can tell
        return False


def bundle_files(bundle: Any) -> List[Tuple[str, Path]]:
    """Every file of a loaded bundle that an output must never replace, each with its name for a message."""
    root = Path(bundle.root)
    files = [("the bundle's manifest.json", root / "manifest.json"),
             ("the bundle's calibration.json", root / "calibration.json")]
    files += [("the bundle's {} segment".format(label), Path(p)) for label, p in bundle.segment_paths.items()]
    files += [("the bundle's {} split".format(name), root / spec.file)
              for name, spec in bundle.manifest.splits.items()]
    return files


def refuse_inside_board(outputs: Sequence[Tuple[str, Optional[Path]]], sysfs_root: Optional[Path]) -> None:
    """Refuse, in one line, an output (``(option, path)``) inside the board's files: the whole tree a ``sysfs_root``
    other than ``/`` names (its sys/, proc/device-tree/ and hidden state), ``/sys`` on a board, and edgeexit's
    runtime directory (the state files `edgeexit restore` needs after a SIGKILL). Records written over a node
    replaced a governor with JSON, which only the next command on the tree undid."""
    root = os.path.realpath(str(sysfs_root)) if sysfs_root is not None else os.sep
    guarded = [("board's tree", root)] if root != os.sep else [("board's sysfs", os.path.join(root, "sys"))]
    guarded.append(("runtime directory", os.path.realpath(str(runtime_dir()))))
    for opt, path in outputs:
        if path is None or str(path) == "-":
            continue
        target = os.path.realpath(str(path))
        for what, place in guarded:
            if target == place or target.startswith(place.rstrip(os.sep) + os.sep):
                raise OutputError("{} {} is inside the {} ({}), where it would replace edgeexit's or the kernel's "
                                  "files; pass {} a path outside it".format(opt, path, what, place, opt))


def refuse_overwriting(outputs: Sequence[Tuple[str, Optional[Path]]], inputs: Sequence[Tuple[str, Path]]) -> None:
    """Refuse, in one line naming both, an output (``(option, path)``; None for one not given) that would replace
    an input (``(name, path)``) or another output: checked before anything is written or a board is touched."""
    given = [(opt, Path(p)) for opt, p in outputs if p is not None and str(p) != "-"]
    for i, (opt, path) in enumerate(given):
        for other, other_path in given[:i]:
            if _same_file(path, other_path):
                raise OutputError("{} {} and {} {} name the same file, so one would overwrite the other; give each its "
                                  "own path".format(other, other_path, opt, path))
        for name, in_path in inputs:
            if _same_file(path, in_path):
                raise OutputError("{} {} is {} ({}), which the output would overwrite; pass {} a path of its "
                                  "own".format(opt, path, name, in_path, opt))
