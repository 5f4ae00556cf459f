"""A bundle whose input or any segment tensor is not int8 is refused at load in one line naming the int8
exporter: an int16 bundle passed every check and then crashed with an IndexError traceback (the policies
decode logits through a 256-entry table)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from edgeexit.bundle import load_bundle
from edgeexit.errors import BundleError
from tests.cli.helpers import assert_one_line_error, edgeexit


def _edit(root: Path, fn: Callable[[Dict[str, Any]], None]) -> None:
    m = json.loads((root / "manifest.json").read_text())
    fn(m)
    (root / "manifest.json").write_text(json.dumps(m))


def _int16_input(m: Dict[str, Any]) -> None:
    m["input"]["dtype"] = "int16"
    m["blocks"][0]["input"]["dtype"] = "int16"


def _retype(where: str, i: int, key: str, dtype: str) -> Callable[[Dict[str, Any]], None]:
    return lambda m: m[where][i][key].__setitem__("dtype", dtype)


@pytest.mark.parametrize("edit,needle", [
    (_int16_input, r"'input\.dtype' is 'int16'"),
    (_retype("blocks", 3, "output", "uint8"), r"'blocks\[3\]\.output\.dtype' is 'uint8'"),
    (_retype("blocks", 4, "input", "banana"), r"'blocks\[4\]\.input\.dtype' is 'banana'"),
    (_retype("exits", 7, "output", "float32"), r"'exits\[7\]\.output\.dtype' is 'float32'"),
    (_retype("exits", 2, "input", "int16"), r"'exits\[2\]\.input\.dtype' is 'int16'"),
])
def test_non_int8_tensors_are_refused_at_load(bundle_copy: Path, edit: Callable[[Dict[str, Any]], None],
                                              needle: str) -> None:
    _edit(bundle_copy, edit)
    with pytest.raises(BundleError, match=needle) as err:
        load_bundle(bundle_copy)
    msg = str(err.value)
    assert "\n" not in msg and "int8 segments only" in msg and "int8 exporter (tools/export.py)" in msg


def test_a_confidence_output_must_be_int8_too(bundle_copy: Path) -> None:
    def conf(m: Dict[str, Any]) -> None:
        m["exits"][1]["confidence_output"] = dict(m["exits"][1]["output"], shape=[1, 1], dtype="int16")

    _edit(bundle_copy, conf)
    with pytest.raises(BundleError, match=r"'exits\[1\]\.confidence_output\.dtype' is 'int16'"):
        load_bundle(bundle_copy)


def test_the_cli_says_so_in_one_line(bundle_copy: Path) -> None:
    _edit(bundle_copy, _int16_input)
    assert_one_line_error(edgeexit("run", "--model", str(bundle_copy), "--limit", "2"), "int8 segments only",
                          "re-export the bundle with the int8 exporter")
