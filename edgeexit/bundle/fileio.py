"""Reading JSON and replacing result files, done one careful way for every file edgeexit reads or writes
(manifest.json, calibration.json, profiles).

Both helpers take ``fail``: a function turning a one-line reason into the caller's own :class:`EdgeExitError`,
whose message names the fix that fits that file (re-export the bundle, run `edgeexit profile` again ...).
"""
from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Callable, Union

from edgeexit.errors import EdgeExitError

#: Builds the caller's error from a one-line reason.
Fail = Callable[[str], EdgeExitError]


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words, for an error message."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_json(path: Path, fail: Fail) -> Any:
    """Parse ``path`` as UTF-8 JSON. A missing or unreadable file, a device or FIFO (reading one would block
    or never end), text that is not UTF-8, invalid JSON and JSON nested too deeply for the parser
    (RecursionError) all become ``fail(reason)``: one line, no traceback."""
    try:
        mode = os.stat(str(path)).st_mode
        if stat.S_ISREG(mode):
            with open(str(path), "rb") as f:
                raw = f.read()
    except OSError as err:
        raise fail(err.strerror or str(err)) from None
    if not stat.S_ISREG(mode):
        raise fail("it is {}, not a regular file".format(file_kind(mode)))
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        why = "not UTF-8 text: {} at byte {}".format(err.reason, err.start)
    except RecursionError:  # '[' * 100000: the parser recurses once per level
        why = "nested too deeply to be an edgeexit file"
    except ValueError as err:  # JSONDecodeError, and ints past Python's digit limit
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
    raise fail(why)


def replace_target(path: Path, fail: Fail) -> Path:
    """The regular file a write to ``path`` replaces, refusing anything else before any long work starts.

    * missing: ``path`` itself (created);
    * a regular file: ``path`` itself;
    * a symlink: its resolved target, replaced in the target's own directory, as vim and emacs save through
      a link: the link stays a link and whatever else names the target sees the new content (replacing the
      link itself would silently cut it; refusing would break the common "profiles/current.json ->
      board-x.json" layout). A dangling link's target is created;
    * anything else (a directory, a device such as /dev/full, a FIFO, a socket): ``fail``, because renaming
      a new file over it would replace the node itself.
    """
    path = Path(path)
    try:
        target = Path(os.path.realpath(str(path))) if os.path.islink(str(path)) else path
        mode = os.stat(str(target)).st_mode
    except FileNotFoundError:
        return target  # a new file, or the missing target of a dangling link
    except OSError as err:  # a symlink loop (ELOOP), a directory we may not search (EACCES)
        raise fail(err.strerror or str(err)) from None
    if not stat.S_ISREG(mode):
        link = "" if target == path else ", a link to {},".format(target)
        raise fail("it{} is {}, not a regular file".format(link, file_kind(mode)))
    return target


def replace_file(path: Path, text: Union[str, bytes], fail: Fail) -> Path:
    """Write ``text`` (UTF-8, or bytes as they are) to ``path`` atomically and return the file written (a symlink's target, see
    :func:`replace_target`). The text goes into a new, uniquely named file beside the target, is synced,
    then renamed over it: a reader never sees half a file, a crash leaves the old one, and the temporary
    name (created with O_EXCL) cannot be a planted symlink. An existing file keeps its permissions."""
    target = replace_target(path, fail)
    tmp = None  # type: Any
    try:
        target.parent.mkdir(parents=True, exist_ok=True)  # a new path's folder, or a dangling link's target's
        try:
            keep_mode = stat.S_IMODE(os.stat(str(target)).st_mode)  # type: Any
        except FileNotFoundError:
            keep_mode = None  # a new file: 0666 less the umask, as open() would give it
        fd = -1
        for _ in range(100):
            tmp = target.with_name(".{}.{}.tmp".format(target.name, secrets.token_hex(4)))
            try:
                fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
        if fd < 0:
            raise FileExistsError(17, "no free temporary name beside it")
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8") if isinstance(text, str) else text)
            f.flush()
            os.fsync(f.fileno())  # the rename must not reach the disk before the data (a board's power cut)
        if keep_mode is not None:
            os.chmod(str(tmp), keep_mode)
        os.replace(str(tmp), str(target))
        tmp = None
    except OSError as err:
        raise fail(err.strerror or str(err)) from None
    finally:
        if tmp is not None:
            try:
                os.unlink(str(tmp))
            except OSError:
                pass
    return target
