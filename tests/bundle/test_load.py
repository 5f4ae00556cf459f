"""Bundle validation: every broken bundle fails with one clear BundleError naming the problem."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from edgeexit.bundle import load_bundle
from edgeexit.errors import BundleError, InterpreterError
from edgeexit.runtime import Runtime
from tests.bundle.segment_edits import edit_segment, tensor_slot

pytestmark = pytest.mark.backend


def _edit(root: Path, fn) -> None:
    m = json.loads((root / "manifest.json").read_text())
    fn(m)
    (root / "manifest.json").write_text(json.dumps(m))


def test_demo_bundle_loads_and_chains():
    b = load_bundle()
    assert len(b.exits) >= 8, "Predictive Exit's fine-grained placement: an exit after every conv stage"
    assert b.exits[-1].after_block == len(b.blocks) - 1
    with Runtime(b) as rt:
        # the exporter calibrates each segment on the previous one's float outputs: no requantization
        assert rt.requantized_boundaries == 0


def test_missing_file(bundle_copy: Path):
    (bundle_copy / "block3.tflite").unlink()
    with pytest.raises(BundleError, match="block3.tflite' is missing"):
        load_bundle(bundle_copy)


def test_sha_mismatch(bundle_copy: Path):
    p = bundle_copy / "exit2.tflite"
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bundle_copy)


def test_path_escaping_bundle(bundle_copy: Path):
    _edit(bundle_copy, lambda m: m["blocks"][0].__setitem__("file", "../../etc/passwd"))
    with pytest.raises(BundleError, match="escapes the bundle directory"):
        load_bundle(bundle_copy)


def test_absolute_path(bundle_copy: Path):
    _edit(bundle_copy, lambda m: m["blocks"][0].__setitem__("file", "/etc/passwd"))
    with pytest.raises(BundleError, match="path '/etc/passwd' is absolute; use a path relative to the bundle"):
        load_bundle(bundle_copy)


def test_unknown_schema(bundle_copy: Path):
    _edit(bundle_copy, lambda m: m.__setitem__("schema_version", 99))
    with pytest.raises(BundleError, match="unknown schema_version 99"):
        load_bundle(bundle_copy)


def test_missing_key_named(bundle_copy: Path):
    _edit(bundle_copy, lambda m: m["exits"][1].pop("macs"))
    with pytest.raises(BundleError, match=r"exits\[1\]\.macs"):
        load_bundle(bundle_copy)


def test_blocks_that_do_not_chain(bundle_copy: Path):
    def shrink(m):
        m["blocks"][2]["input"]["shape"] = [1, 3, 3, 7]

    _edit(bundle_copy, shrink)
    with pytest.raises(BundleError, match="do not chain"):
        load_bundle(bundle_copy)


def test_dtype_mismatch_between_blocks(bundle_copy: Path):
    # Every segment tensor must be int8, so a dtype that breaks the chain is refused by name.
    def retype(m):
        m["blocks"][1]["output"]["dtype"] = "uint8"

    _edit(bundle_copy, retype)
    with pytest.raises(BundleError, match=r"'blocks\[1\]\.output\.dtype' is 'uint8', but edgeexit runs int8"):
        load_bundle(bundle_copy)


def test_manifest_spec_disagrees_with_tflite(bundle_copy: Path):
    """A manifest that lies about a tensor is caught against the real .tflite at load."""

    def lie(m):
        # consistent inside the manifest (so the structural check passes), wrong against the files
        after1 = [e for e in m["exits"] if e["after_block"] == 1]
        for seg in [m["blocks"][1]["output"], m["blocks"][2]["input"]] + [e["input"] for e in after1]:
            seg["shape"] = [1, 2, 2, 2]

    _edit(bundle_copy, lie)
    b = load_bundle(bundle_copy)
    with pytest.raises(BundleError, match="the .tflite tensor is"):
        Runtime(b)


@pytest.mark.parametrize("calibration", [True, False])
@pytest.mark.parametrize("damage,needle", [
    (lambda data: b"this is not a flatbuffer" * 10, "no FlatBuffer header"),
    (lambda data: data[:len(data) // 2], "past the end of the file"),  # tflite-runtime crashed (SIGSEGV) opening it
    (lambda data: data[:-1], "past the end of the file"),
])
def test_corrupt_tflite_with_matching_sha(bundle_copy: Path, calibration: bool, damage, needle: str):
    """Named as the broken segment, not as a stale calibration.json (whose hash the sha256 edit also changed)."""
    p = bundle_copy / "block1.tflite"
    p.write_bytes(damage(p.read_bytes()))
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    _edit(bundle_copy, lambda m: m["blocks"][1].__setitem__("sha256", digest))
    with pytest.raises(BundleError, match=r"block1 file 'block1.tflite' is not a whole TFLite model \(.*{}.*\); "
                                          r"re-export the bundle".format(needle)):
        load_bundle(bundle_copy, calibration=calibration)


def _first_dim(model):
    tensor = model.tables(2)[0].tables(0)[0]
    return tensor.ref(0) + 4, 0  # the first entry of its shape vector


@pytest.mark.parametrize("where,needle", [
    # each of these crashed tflite-runtime opening the segment (SIGSEGV, SIGFPE for the zero dimension)
    (lambda model: (model.tables(7)[0].tables(1)[0].field(1), 213), "a reference to tensor 213 of"),  # signature output
    (lambda model: (model.tables(6)[0].field(1), 255), "a reference to buffer 255 of"),  # metadata's buffer
    (_first_dim, "a tensor has a dimension of 0"),
])
def test_an_index_out_of_range_with_matching_sha(bundle_copy: Path, where, needle: str):
    edit_segment(bundle_copy, "block1", where)
    with pytest.raises(BundleError, match=r"block1 file 'block1.tflite' is not a whole TFLite model \({}.*\); "
                                          r"re-export the bundle".format(needle)):
        load_bundle(bundle_copy, calibration=False)


def test_every_shipped_segment_passes_the_structure_check():
    from edgeexit.bundle.flatbuffer import verify_tflite
    from edgeexit.paths import demo_bundle_dir

    files = sorted(demo_bundle_dir().glob("*.tflite"))
    assert len(files) == 16
    for f in files:
        verify_tflite(f.read_bytes())


def test_a_model_the_interpreter_refuses_is_one_line(bundle_copy: Path):
    """Whole and in bounds, but of a schema version no interpreter takes: the interpreter's own refusal."""
    from edgeexit.bundle.flatbuffer import _Reader

    p = bundle_copy / "block1.tflite"
    data = bytearray(p.read_bytes())
    r = _Reader(bytes(data))
    at = r.table(r.uint(0, 4)).field(0)  # Model.version
    assert at is not None and r.uint(at, 4) == 3
    data[at:at + 4] = (99).to_bytes(4, "little")
    p.write_bytes(bytes(data))
    _edit(bundle_copy, lambda m: m["blocks"][1].__setitem__("sha256", hashlib.sha256(p.read_bytes()).hexdigest()))
    b = load_bundle(bundle_copy, calibration=False)  # fitted to the old block1
    with pytest.raises(InterpreterError, match="not a loadable TFLite model .*schema version 99"):
        Runtime(b)


def test_not_json(bundle_copy: Path):
    (bundle_copy / "manifest.json").write_text("{nope")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_copy)


def test_not_a_directory(tmp_path: Path):
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nothing-here")


def test_splits_are_held_out_and_checked():
    b = load_bundle()
    cal, ev = b.split("calibration"), b.split("evaluation")
    assert len(cal) >= 500 and len(ev) >= 500
    assert cal.y is not None and ev.y is not None
    # held out from each other: no identical sample in both
    a = {x.tobytes() for x in cal.x}
    assert not any(x.tobytes() in a for x in ev.x)
    assert np.all(np.bincount(ev.y, minlength=10) > 0)


def test_a_calibration_made_for_another_bundle_is_refused(bundle_copy: Path):
    """Review finding: a calibration.json copied from another bundle with as many exits was used without a word
    (every policy ran on thresholds fitted to other segments). It carries the sha256 of what it was fitted to."""
    _edit(bundle_copy, lambda m: m.update(name="renamed", labels=[str(i) for i in range(10)]))
    load_bundle(bundle_copy)  # a name or labels do not change what the thresholds were fitted to
    p = bundle_copy / "exit7.tflite"  # a re-export: other bytes (here the same model, one byte appended)
    p.write_bytes(p.read_bytes() + b"\0")
    _edit(bundle_copy, lambda m: m["exits"][7].__setitem__("sha256", hashlib.sha256(p.read_bytes()).hexdigest()))
    with pytest.raises(BundleError, match=r"fitted to other segments .*run `edgeexit calibrate --model {}`".format(bundle_copy)):
        load_bundle(bundle_copy)
    assert load_bundle(bundle_copy, calibration=False).calibration == {}  # what calibrate loads: it replaces it


def test_a_calibration_is_refused_after_the_input_preprocessing_changed(bundle_copy: Path):
    """Another preprocessing scale moves every activation: thresholds fitted before it no longer hold."""
    _edit(bundle_copy, lambda m: m["input"]["preprocessing"].__setitem__("scale", 2 * m["input"]["preprocessing"]["scale"]))
    with pytest.raises(BundleError, match="fitted to other segments or input preprocessing"):
        load_bundle(bundle_copy)


def test_commands_that_do_not_read_the_calibration_run_on_a_stale_one(bundle_copy: Path):
    """bench fits its own, and full needs none: a stale calibration.json stopped them (review finding)."""
    from tests.cli.helpers import edgeexit

    cal = json.loads((bundle_copy / "calibration.json").read_text())
    cal["meta"]["model_sha256"] = "0" * 64
    (bundle_copy / "calibration.json").write_text(json.dumps(cal))
    p = edgeexit("run", "--model", str(bundle_copy), "--policy", "full", "--limit", "8", "--json")
    assert p.returncode == 0, p.stderr
    p = edgeexit("run", "--model", str(bundle_copy), "--policy", "threshold", "--limit", "8")
    assert p.returncode != 0 and "fitted to other segments" in p.stderr


@pytest.mark.parametrize("kind", ["directory", "loop"])
def test_a_calibration_that_is_no_file_is_named(bundle_copy: Path, kind: str):
    """It read as no calibration at all: `run` asked for a `calibrate` that then failed on it."""
    cal = bundle_copy / "calibration.json"
    cal.unlink()
    if kind == "directory":
        cal.mkdir()
    else:
        cal.symlink_to(cal)
    with pytest.raises(BundleError, match=r"calibration.json is (a directory|unreadable \(Too many levels).*remove it and run"):
        load_bundle(bundle_copy)


def test_an_uncalibrated_bundle_names_its_own_path(bundle_copy: Path):
    from edgeexit.errors import CalibrationError
    from edgeexit.policies import make_policy

    (bundle_copy / "calibration.json").unlink()
    b = load_bundle(bundle_copy)
    for name in ("threshold", "predictive", "pe-heuristic", "eenet"):
        with pytest.raises(CalibrationError, match="run `edgeexit calibrate --model {}`".format(bundle_copy)):
            make_policy(name, b)


def test_a_tensor_name_that_is_not_utf8_is_one_line(bundle_copy: Path):
    """A review's byte mutation (0xf7 inside 'StatefulPartitionedCall_1:0', sha256 fixed) passed the structure
    check, and the interpreter's get_output_details() then raised UnicodeDecodeError: a 46-line traceback."""
    from edgeexit.bundle.flatbuffer import _Reader

    p = bundle_copy / "exit5.tflite"
    data = bytearray(p.read_bytes())
    r = _Reader(bytes(data))
    tensors = r.table(r.uint(0, 4)).tables(2)[0].tables(0)
    name_at = tensors[-1].ref(3)
    assert name_at is not None and r.vector(name_at, 1) > 0
    data[name_at + 4] = 0xF7  # the name's first byte: no UTF-8 text starts so
    p.write_bytes(bytes(data))
    _edit(bundle_copy, lambda m: m["exits"][5].__setitem__("sha256", hashlib.sha256(p.read_bytes()).hexdigest()))
    with pytest.raises(BundleError, match=r"exit5 file 'exit5.tflite' is not a whole TFLite model \(a tensor name is "
                                          r"not UTF-8 text.*\); re-export the bundle"):
        load_bundle(bundle_copy, calibration=False)


@pytest.mark.parametrize("segment,op,field,slot,needle", [
    # each of the first four segfaulted LiteRT 2.3 and tflite-runtime 2.14 on the first inference
    ("block1", 0, 1, 1, "operator 0 \\(builtin code 3\\) has its input 1 marked absent"),  # CONV_2D's filter
    ("exit0", 3, 1, 0, "operator 3 \\(builtin code 45\\) has its input 0 marked absent"),  # STRIDED_SLICE
    ("exit0", 5, 1, 1, "operator 5 \\(builtin code 22\\) has its input 1 marked absent"),  # RESHAPE's shape
    ("exit0", 6, 1, 1, "operator 6 \\(builtin code 9\\) has its input 1 marked absent"),  # FULLY_CONNECTED's weights
    ("exit0", 6, 2, 0, "a reference to tensor -1 of"),  # an operator's output
    ("block2", None, 2, 0, "a reference to tensor -1 of"),  # the subgraph's output
])
def test_an_absent_tensor_where_the_kernel_needs_one_is_refused(bundle_copy: Path, segment, op, field, slot, needle):
    from edgeexit.bundle.flatbuffer import _Reader

    data = (bundle_copy / "{}.tflite".format(segment)).read_bytes()
    r = _Reader(data)
    ops = r.table(r.uint(0, 4)).tables(2)[0].tables(3)
    assert op is None or ops[op].ints(1)[slot] != -1 or field == 2
    edit_segment(bundle_copy, segment, tensor_slot(op, field, slot, -1))
    with pytest.raises(BundleError, match=r"{0} file '{0}.tflite' is not a whole TFLite model \({1}.*\); "
                                          r"re-export the bundle".format(segment, needle)):
        load_bundle(bundle_copy, calibration=False)


@pytest.mark.parametrize("op,tensor,needle", [
    (6, 0, "operator 6 writes tensor 0, which is the subgraph's input"),  # segfaulted both interpreters
    (6, 5, "operator 6 writes tensor 5, which is a constant"),  # the weights of the same FULLY_CONNECTED
    (1, 13, "operator 5 writes tensor 13, which is operator 1's output"),  # segfaulted both interpreters
])
def test_an_operator_writing_a_tensor_that_is_not_its_own_is_refused(bundle_copy: Path, op: int, tensor: int, needle):
    """exit3: CONV_2D, AVERAGE_POOL_2D, SHAPE, STRIDED_SLICE, PACK, RESHAPE (writes 13), FULLY_CONNECTED (reads 13)."""
    edit_segment(bundle_copy, "exit3", tensor_slot(op, 2, 0, tensor))
    with pytest.raises(BundleError, match=r"exit3 file 'exit3.tflite' is not a whole TFLite model \({}\); "
                                          r"re-export the bundle".format(needle)):
        load_bundle(bundle_copy, calibration=False)


@pytest.mark.parametrize("code,slot,refused", [(3, 1, True), (132, 2, False), (132, 1, True)])
def test_a_3d_convolution_may_leave_its_bias_out(code: int, slot: int, refused: bool):
    """The converter leaves out a CONV_3D's bias even for use_bias=True (it adds it in an ADD), and Keras'
    Conv3D and Conv3DTranspose were refused (a review's sweep of converter output): exit0's CONV_2D made a
    CONV_3D (builtin code 132) in its operator code table, one input marked absent."""
    from edgeexit.bundle.flatbuffer import Broken, _Reader, verify_tflite
    from edgeexit.paths import demo_bundle_dir
    from tests.bundle.segment_edits import set_uint

    data = set_uint((demo_bundle_dir() / "exit0.tflite").read_bytes(), tensor_slot(0, 1, slot, -1))
    r = _Reader(data)
    opcode = r.table(r.uint(0, 4)).tables(1)[r.table(r.uint(0, 4)).tables(2)[0].tables(3)[0].scalar(0, 4)]
    old, new = opcode.field(0), opcode.field(3)  # deprecated_builtin_code (int8), builtin_code (int32)
    assert r.uint(old, 1) == 3 and r.uint(new, 4) == 3
    data = bytearray(data)
    data[old] = min(code, 127)  # 127: the placeholder for codes past int8
    data[new:new + 4] = code.to_bytes(4, "little")
    if refused:
        with pytest.raises(Broken, match="operator 0 \\(builtin code {}\\) has its input {} marked absent".format(code, slot)):
            verify_tflite(bytes(data))
    else:
        verify_tflite(bytes(data))


def test_an_empty_vector_is_no_zero_dimension(bundle_copy: Path):
    """A reshape to a scalar takes the constant [] as its new shape (shape [0]): such models were refused.
    exit3's SHAPE output (int32 [4]) made [0]: it loads, and the interpreter says what it makes of it."""
    from edgeexit.bundle.flatbuffer import verify_tflite

    def first_dim_of(i: int):
        return lambda model: (model.tables(2)[0].tables(0)[i].ref(0) + 4, 0)

    edit_segment(bundle_copy, "exit3", first_dim_of(10))
    verify_tflite((bundle_copy / "exit3.tflite").read_bytes())
    edit_segment(bundle_copy, "exit3", first_dim_of(0))  # the input [1, 7, 7, 32] made [0, 7, 7, 32]
    with pytest.raises(BundleError, match="a tensor has a dimension of 0"):
        load_bundle(bundle_copy, calibration=False)


def test_an_absent_bias_is_left_to_the_interpreter(bundle_copy: Path):
    """A FULLY_CONNECTED without its bias runs; an int8 CONV_2D without one is refused by the interpreter, in one
    line. Neither crashes, so the structure check lets both through."""
    from edgeexit.bundle.data import quantize_inputs
    from edgeexit.bundle.flatbuffer import _Reader

    def fc_and_conv(name: str):
        r = _Reader((bundle_copy / name).read_bytes())
        ops = r.table(r.uint(0, 4)).tables(2)[0].tables(3)
        return [len(op.ints(1)) for op in ops]

    assert fc_and_conv("exit4.tflite")[6] == 3 and fc_and_conv("block3.tflite")[0] == 3
    edit_segment(bundle_copy, "exit4", tensor_slot(6, 1, 2, -1))
    b = load_bundle(bundle_copy, calibration=False)
    xq = quantize_inputs(b.split("evaluation").take(2).x, b.manifest.input)
    with Runtime(b) as rt:
        assert rt.exit_table(xq).pred.shape == (2, len(b.exits))
    edit_segment(bundle_copy, "block3", tensor_slot(0, 1, 2, -1))
    b = load_bundle(bundle_copy, calibration=False)
    with pytest.raises(InterpreterError, match="block3.*optional but was expected"):
        with Runtime(b) as rt:
            rt.exit_table(xq)
