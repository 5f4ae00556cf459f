"""Hand-edited manifests: quantization that disagrees with the .tflite files, impossible scales, bad
dtypes and file names are refused in one BundleError line, never run (garbage accuracy) or crash."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from edgeexit.bundle import load_bundle
from edgeexit.errors import BundleError
from edgeexit.runtime import Runtime

pytestmark = pytest.mark.backend


def _edit(root: Path, fn: Callable[[Dict[str, Any]], None]) -> None:
    m = json.loads((root / "manifest.json").read_text())
    fn(m)
    (root / "manifest.json").write_text(json.dumps(m))


def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text
    return text


@pytest.mark.parametrize("key,value", [("scale", "x3"), ("zero_point", 50)])
def test_segment_quantization_must_match_the_tflite(bundle_copy: Path, key: str, value: Any) -> None:
    def lie(m: Dict[str, Any]) -> None:
        spec = m["blocks"][3]["input"]
        spec[key] = spec["scale"] * 3 if value == "x3" else value

    _edit(bundle_copy, lie)
    b = load_bundle(bundle_copy)  # consistent on its own: only the .tflite shows the lie
    with pytest.raises(BundleError) as err:
        Runtime(b)
    msg = _one_line(err)
    assert "block3" in msg and "quantized with scale" in msg and "correct manifest.json" in msg


def test_exit_output_quantization_must_match_the_tflite(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda m: m["exits"][2]["output"].__setitem__("scale", m["exits"][2]["output"]["scale"] * 1.001))
    with pytest.raises(BundleError, match="exit2.*quantized with scale"):
        Runtime(load_bundle(bundle_copy))


@pytest.mark.parametrize("value", [-0.5, 0, float("nan"), float("inf")])
def test_input_scale_must_be_finite_and_positive(bundle_copy: Path, value: float) -> None:
    _edit(bundle_copy, lambda m: m["input"]["quantization"].__setitem__("scale", value))
    with pytest.raises(BundleError, match=r"'input\.quantization\.scale' must be a finite number > 0") as err:
        load_bundle(bundle_copy)
    _one_line(err)


@pytest.mark.parametrize("value", [-0.5, 0, float("nan")])
def test_segment_scale_must_be_finite_and_positive(bundle_copy: Path, value: float) -> None:
    _edit(bundle_copy, lambda m: m["blocks"][3]["input"].__setitem__("scale", value))
    with pytest.raises(BundleError, match=r"'blocks\[3\]\.input\.scale' must be a finite number > 0"):
        load_bundle(bundle_copy)


def test_input_quantization_must_match_block0(bundle_copy: Path) -> None:
    # Samples are quantized with input.quantization and handed to block 0 as they are.
    _edit(bundle_copy, lambda m: m["input"]["quantization"].__setitem__("zero_point", 0))
    with pytest.raises(BundleError, match=r"input\.quantization .* differs from blocks\[0\]\.input"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize("key,value", [("raw_dtype", "foo"), ("raw_dtype", "object")])
def test_input_dtypes_must_be_dtype_names(bundle_copy: Path, key: str, value: str) -> None:
    _edit(bundle_copy, lambda m: m["input"].__setitem__(key, value))
    with pytest.raises(BundleError, match=r"'input\.{}' is .*, not a dtype such as".format(key)) as err:
        load_bundle(bundle_copy).split("calibration")
    _one_line(err)


def test_raw_dtype_is_optional_as_the_format_says(bundle_copy: Path) -> None:
    """docs/bundle-format.md gives input.raw_dtype a default (uint8); a manifest written from it was refused."""
    _edit(bundle_copy, lambda m: m["input"].pop("raw_dtype"))
    b = load_bundle(bundle_copy)
    assert b.manifest.input.raw_dtype == "uint8" and len(b.split("calibration").take(3).x) == 3


@pytest.mark.parametrize("value", ["float32", "", "int16"])
def test_the_input_dtype_must_be_int8(bundle_copy: Path, value: str) -> None:
    _edit(bundle_copy, lambda m: m["input"].__setitem__("dtype", value))
    with pytest.raises(BundleError, match=r"'input\.dtype' is .*, but edgeexit runs int8 segments only") as err:
        load_bundle(bundle_copy)
    _one_line(err)


@pytest.mark.parametrize("name", ["block0.tflite\x00x", "x" * 5000])
def test_unusable_file_names(bundle_copy: Path, name: str) -> None:
    _edit(bundle_copy, lambda m: m["blocks"][0].__setitem__("file", name))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_copy)
    assert "block0" in _one_line(err)


@pytest.mark.parametrize("where,key,value,needle", [
    # blocks[2].macs = -5000000 ran to exit 0 with a negative mean_macs
    ("blocks", "macs", -5000000, r"'blocks\[2\]\.macs' must be an integer from 0 to"),
    ("blocks", "params", -1, r"'blocks\[2\]\.params' must be an integer from 0 to"),
    ("exits", "macs", 10 ** 30, r"'exits\[2\]\.macs' must be an integer from 0 to"),
])
def test_mac_and_parameter_counts_must_be_non_negative(bundle_copy: Path, where: str, key: str, value: int,
                                                        needle: str) -> None:
    _edit(bundle_copy, lambda m: m[where][2].__setitem__(key, value))
    with pytest.raises(BundleError, match=needle) as err:
        load_bundle(bundle_copy)
    _one_line(err)


def test_a_bundle_without_macs_is_refused(bundle_copy: Path) -> None:
    # all macs 0: the run's summary divided by the full path's 0 MACs (ZeroDivisionError traceback)
    def zero(m: Dict[str, Any]) -> None:
        for seg in m["blocks"] + m["exits"]:
            seg["macs"] = 0

    _edit(bundle_copy, zero)
    with pytest.raises(BundleError, match="0 MACs in all") as err:
        load_bundle(bundle_copy)
    _one_line(err)


@pytest.mark.parametrize("key,value", [("scale", 1e308), ("scale", 0.0), ("scale", -0.5), ("scale", float("nan")),
                                       ("offset", 1e308), ("offset", float("-inf"))])
def test_preprocessing_must_be_finite_and_bounded(bundle_copy: Path, key: str, value: float) -> None:
    # scale = 1e308 turned every sample into inf: garbage predictions and numpy RuntimeWarnings
    _edit(bundle_copy, lambda m: m["input"]["preprocessing"].__setitem__(key, value))
    with pytest.raises(BundleError, match=r"'input\.preprocessing\.{}' must be a finite number".format(key)) as err:
        load_bundle(bundle_copy)
    _one_line(err)


@pytest.mark.parametrize("where,edit", [
    ("exits[1].confidence_outputs", lambda m: m["exits"][1].__setitem__("confidence_outputs", m["exits"][1]["output"])),
    ("bogus", lambda m: m.__setitem__("bogus", 1)),
    ("blocks[0].after_block", lambda m: m["blocks"][0].__setitem__("after_block", 0)),
    ("input.quantization.zero_pt", lambda m: m["input"]["quantization"].__setitem__("zero_pt", 0)),
    ("exits[2].output.scales", lambda m: m["exits"][2]["output"].__setitem__("scales", 1.0)),
    ("splits.evaluation.count", lambda m: m["splits"]["evaluation"].__setitem__("count", 5)),
])
def test_an_unknown_key_is_named(bundle_copy: Path, where: str, edit: Callable[[Dict[str, Any]], None]) -> None:
    """Review finding: a misspelt optional key (confidence_output -> confidence_outputs) silently dropped the
    exit's confidence head; every key nothing reads is refused now. training and stats stay free-form."""
    _edit(bundle_copy, edit)
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_copy)
    assert "unknown key '{}'".format(where) in _one_line(err)


def test_free_form_sections_stay_open(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda m: (m["training"].__setitem__("notes", "x"), m["exits"][0]["stats"].__setitem__("extra", 1)))
    load_bundle(bundle_copy)


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_segment_that_is_no_file_says_what_it_is(bundle_copy: Path, kind: str) -> None:
    """It read as 'missing', though it was there."""
    import os

    p = bundle_copy / "block2.tflite"
    p.unlink()
    p.mkdir() if kind == "directory" else os.mkfifo(str(p))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_copy)
    assert "block2 file 'block2.tflite' is a {}".format("directory" if kind == "directory" else "FIFO") in _one_line(err)


def test_a_segment_entry_that_is_no_object_says_so(bundle_copy: Path) -> None:
    _edit(bundle_copy, lambda m: m["blocks"].__setitem__(0, 5))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_copy)
    assert "'blocks[0]' must be an object, got 5" in _one_line(err)


def test_a_newer_format_is_named_before_its_new_keys(bundle_copy: Path) -> None:
    """A future exporter's key read as a misspelling ("correct its spelling"), not as a newer format."""
    _edit(bundle_copy, lambda m: m.update(schema_version=99, new_key=1))
    with pytest.raises(BundleError) as err:
        load_bundle(bundle_copy)
    assert "unknown schema_version 99" in _one_line(err)


@pytest.mark.parametrize("value", [True, 1.0, 0, -1, "1"])
def test_the_input_shape_must_be_positive_integers(bundle_copy: Path, value: Any) -> None:
    """true and 1.0 equal 1 in Python, so the input shape passed the check against block 0's and crashed
    quantize_inputs with a TypeError traceback; every segment shape was checked already."""
    _edit(bundle_copy, lambda m: m["input"]["shape"].__setitem__(0, value))
    with pytest.raises(BundleError, match=r"'input\.shape' must be positive integers") as err:
        load_bundle(bundle_copy)
    _one_line(err)


@pytest.mark.parametrize("value", [None, [], {}, 3, True])
def test_labels_must_be_strings(bundle_copy: Path, value: Any) -> None:
    _edit(bundle_copy, lambda m: m["labels"].__setitem__(0, value))
    with pytest.raises(BundleError, match=r"'labels' must be strings, got") as err:
        load_bundle(bundle_copy)
    _one_line(err)
