"""Sample files (--input, the bundle's calib.npz/eval.npz) with crafted or foreign contents: one InputDataError
line naming the expected format, never a MemoryError, tokenize.TokenError or numpy's allow_pickle advice."""
from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from edgeexit.bundle import load_bundle, read_samples
from edgeexit.errors import InputDataError
from tests.cli.helpers import assert_one_line_error, edgeexit

HUGE_SHAPE = (10 ** 12, 28, 28, 1)  # 713 TiB of uint8: np.load tried to allocate it


def _header(shape: tuple, descr: str = "|u1") -> bytes:
    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _raw_header(text: bytes) -> bytes:
    """An .npy v1.0 header holding ``text`` as it is (malformed on purpose)."""
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text


def _npz(path: Path, member: bytes) -> None:
    with zipfile.ZipFile(str(path), "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", member)


CASES = {
    "huge.npy": (_header(HUGE_SHAPE) + b"\0" * 1000, "header claims shape (1000000000000, 28, 28, 1)"),
    "huge.npz": (_header(HUGE_SHAPE) + b"\0" * 1000, "x: its header claims shape"),
    "tokenize.npy": (_raw_header(b"{'descr': '''|u1"), "is not a readable .npz or .npy"),
    "objects.npz": (_header((2, 28, 28, 1), "|O") + b"\0" * 64, "holds Python objects"),
    "text.npy": (b"1,2,3\n4,5,6\n", "is neither an .npz nor an .npy file"),
    "empty.npz": (b"", "is empty"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_crafted_sample_files_are_one_line(tmp_path: Path, name: str) -> None:
    content, needle = CASES[name]
    path = tmp_path / name
    if name.endswith(".npz") and content:
        _npz(path, content)
    else:
        path.write_bytes(content)
    spec = load_bundle().manifest
    with pytest.raises(InputDataError) as err:
        read_samples(path, spec.input, spec.num_classes)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg and "allow_pickle" not in msg
    assert "np.savez(path, x=..., y=...)" in msg  # names the format expected


def test_the_cli_names_the_format_for_a_text_input(tmp_path: Path) -> None:
    path = tmp_path / "samples.npy"
    path.write_text("not numpy at all\n")
    assert_one_line_error(edgeexit("run", "--input", str(path), "--limit", "2"), "neither an .npz nor an .npy file",
                          "np.savez(path, x=..., y=...)")


def test_a_bundle_split_with_a_crafted_header_is_one_line(bundle_copy: Path) -> None:
    """calib.npz goes through the same reader: its sha256 in the manifest matches the crafted file."""
    import hashlib
    import json

    path = bundle_copy / "calib.npz"
    _npz(path, _header(HUGE_SHAPE) + b"\0" * 1000)
    m = json.loads((bundle_copy / "manifest.json").read_text())
    name = next(k for k, s in m["splits"].items() if s["file"] == "calib.npz")
    m["splits"][name]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(InputDataError, match="header claims shape"):
        load_bundle(bundle_copy).split(name)


def test_valid_npy_and_npz_still_load(tmp_path: Path) -> None:
    spec = load_bundle().manifest
    x = np.zeros((3, 28, 28, 1), np.uint8)
    np.save(str(tmp_path / "x.npy"), x)
    np.savez_compressed(str(tmp_path / "xy.npz"), x=x, y=np.array([1, 2, 3]))
    assert len(read_samples(tmp_path / "x.npy", spec.input, spec.num_classes)) == 3
    s = read_samples(tmp_path / "xy.npz", spec.input, spec.num_classes)
    assert len(s) == 3 and list(s.y) == [1, 2, 3]


@pytest.mark.parametrize("same", ["file", "sha256"])
def test_an_evaluation_split_that_is_the_calibration_split_is_refused(bundle_copy: Path, same: str) -> None:
    """Review finding: splits.evaluation pointed at calib.npz ran calibrate and run without a word, and run
    reported the in-sample accuracy (where calibration meets its target by construction) as an evaluation."""
    import json
    import shutil

    from edgeexit.bundle import load_bundle
    from edgeexit.errors import BundleError

    m = json.loads((bundle_copy / "manifest.json").read_text())
    if same == "file":
        m["splits"]["evaluation"].update(m["splits"]["calibration"])
    else:  # a copy under another name
        shutil.copy(str(bundle_copy / m["splits"]["calibration"]["file"]), str(bundle_copy / "eval-copy.npz"))
        m["splits"]["evaluation"].update(m["splits"]["calibration"], file="eval-copy.npz")
    (bundle_copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="the calibration and evaluation splits are the same samples"):
        load_bundle(bundle_copy)
    assert_one_line_error(edgeexit("run", "--model", str(bundle_copy), "--limit", "2"), "same samples", "splits.evaluation")
