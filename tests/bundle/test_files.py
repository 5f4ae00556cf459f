"""The files a bundle holds or gets written into it: JSON that cannot be parsed (nested 100,000 deep, not UTF-8)
is one BundleError line, and calibration.json is replaced atomically, through a symlink, never over a FIFO."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from edgeexit.bundle import CALIBRATION_FILE, load_bundle
from edgeexit.bundle.fileio import read_json, replace_file
from edgeexit.errors import BundleError, EdgeExitError, OutputError

DEEP = "[" * 100000 + "]" * 100000  # a RecursionError traceback in json.load before


def _fail(why: str) -> EdgeExitError:
    return BundleError("bad ({})".format(why))


@pytest.mark.parametrize("name,text,needle", [
    ("manifest.json", DEEP, "manifest.json is not valid JSON (nested too deeply"),
    ("calibration.json", DEEP, "calibration.json is not valid JSON (nested too deeply"),
    ("manifest.json", b"\xff\xfe{}", "manifest.json is not valid JSON (not UTF-8 text"),
    ("calibration.json", "{", "calibration.json is not valid JSON (Expecting property name"),
])
def test_unparsable_bundle_json_is_one_line(bundle_copy: Path, name: str, text: object, needle: str) -> None:
    path = bundle_copy / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(str(text))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_copy)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg
    assert ("re-export the bundle" if name == "manifest.json" else "edgeexit calibrate") in msg


def test_read_json_refuses_a_fifo_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "p.json"
    os.mkfifo(str(fifo))
    with pytest.raises(BundleError, match=r"bad \(it is a FIFO \(named pipe\), not a regular file\)"):
        read_json(fifo, _fail)


def test_replace_file_writes_through_a_symlink_and_keeps_the_mode(tmp_path: Path) -> None:
    # The link stays a link and its target gets the new text, as an editor saves through a link.
    target = tmp_path / "real" / "cal.json"
    target.parent.mkdir()
    target.write_text("old\n")
    os.chmod(str(target), 0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert replace_file(link, "new\n", _fail) == target
    assert link.is_symlink() and os.readlink(str(link)) == str(target)
    assert target.read_text() == "new\n" and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["cal.json"]  # no temporary file left behind


def test_replace_file_makes_a_dangling_link_s_missing_folder(tmp_path: Path) -> None:
    # A dangling link's target is created, folder and all, as a new path's is: the output checks make none
    # that stays (writable_output removes what it made), so the writer must.
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "missing" / "dir" / "p.json")
    assert replace_file(link, "new\n", _fail) == tmp_path / "missing" / "dir" / "p.json"
    assert link.read_text() == "new\n"


@pytest.mark.parametrize("kind", ["fifo", "directory", "link to fifo"])
def test_replace_file_refuses_what_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    node = tmp_path / "node"
    if kind == "directory":
        node.mkdir()
    else:
        os.mkfifo(str(node))
    path = node if kind != "link to fifo" else tmp_path / "link"
    if kind == "link to fifo":
        path.symlink_to(node)
    with pytest.raises(BundleError, match="not a regular file") as err:
        replace_file(path, "x", _fail)
    assert "\n" not in str(err.value)
    assert stat.S_ISFIFO(os.lstat(str(node)).st_mode) or node.is_dir()  # the node itself was not replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({"node", path.name})


def test_save_calibration_refuses_a_fifo_and_writes_through_a_link(bundle_copy: Path, tmp_path: Path) -> None:
    b = load_bundle(bundle_copy)
    cal = bundle_copy / CALIBRATION_FILE
    cal.unlink()
    os.mkfifo(str(cal))
    b.calibration = {"meta": {"n": 1}}
    with pytest.raises(OutputError, match=r"cannot write the calibration to .*\(it is a FIFO"):
        b.save_calibration()
    assert stat.S_ISFIFO(os.lstat(str(cal)).st_mode)
    cal.unlink()
    elsewhere = tmp_path / "kept.json"
    elsewhere.write_text("{}")
    cal.symlink_to(elsewhere)
    b.save_calibration()
    assert cal.is_symlink() and json.loads(elsewhere.read_text()) == {"meta": {"n": 1}}


def test_calibrate_refuses_a_fifo_before_fitting(bundle_copy: Path) -> None:
    # its writability check opened the FIFO for append and blocked until someone read it
    from tests.cli.helpers import assert_one_line_error, edgeexit

    cal = bundle_copy / CALIBRATION_FILE
    cal.unlink()
    os.mkfifo(str(cal))
    p = edgeexit("calibrate", "--model", str(bundle_copy), timeout=60)
    assert_one_line_error(p, "cannot write the calibration to", "FIFO", "--model DIR (a copy of the bundle)")  # not read first
    assert p.stdout == ""
