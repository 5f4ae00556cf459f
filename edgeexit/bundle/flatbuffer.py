"""A bounds check of a .tflite FlatBuffer before an interpreter opens it.

LiteRT verifies a model and refuses a broken one with a ValueError; tflite-runtime (2.13/2.14, the JetPack
fallback) does not, and a segment cut short, its sha256 updated with it, crashed the process (SIGSEGV). This
walks the tables and vectors the interpreter reads (schema.fbs: Model, SubGraph, Tensor, Operator, Buffer,
Metadata, SignatureDef) and checks that each lies inside the file, that the indices between them are in
range and that no tensor of rank 2 or more has a zero dimension (a division by zero, SIGFPE, in
tflite-runtime's kernels). It also checks that a tensor is marked absent (-1) only where its kernel runs
without one, and that each tensor an operator writes is its own, not an input, a constant or another
operator's output. It is no full verifier: a file that passes can still be refused by the interpreter, in
one line, or crash a kernel, which the runtime's probe (``edgeexit/segment_probe.py``) names; an operator's
options (a stride, a filter size) are not checked.
"""
from __future__ import annotations

from typing import Optional

IDENTIFIER = b"TFL3"  # the FlatBuffer file identifier, bytes 4-8 of every .tflite

# The operator input that may be absent (-1): a bias, which these kernels do without. Elsewhere an absent tensor
# is no model: an absent weight (CONV_2D, FULLY_CONNECTED) or STRIDED_SLICE/RESHAPE operand segfaulted both
# LiteRT 2.3 and tflite-runtime 2.14 (tests/bundle/test_load.py), and the rest were refused when invoked.
# CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV, CONV_3D, CONV_3D_TRANSPOSE (the converter leaves
# out a 3-D convolution's bias even for use_bias=True, adding it in an ADD)
_OPTIONAL_INPUT = {3: 2, 4: 2, 9: 2, 67: 3, 132: 2, 141: 3}
# Recurrent operators, whose optional inputs (peepholes, projection, layer norm) this check leaves alone:
# LSTM, SVDF, UNIDIRECTIONAL_SEQUENCE_RNN, UNIDIRECTIONAL_SEQUENCE_LSTM, BIDIRECTIONAL_SEQUENCE_RNN/_LSTM.
_UNCHECKED_INPUTS = {16, 27, 35, 44, 46, 52}


class Broken(Exception):
    """Where the structure leaves the file (a message for the one-line error)."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)

    def uint(self, pos: int, size: int, signed: bool = False) -> int:
        if pos < 0 or pos + size > self.n:
            raise Broken("an offset at byte {} points past the end of the file ({} bytes)".format(pos, self.n))
        return int.from_bytes(self.data[pos:pos + size], "little", signed=signed)

    def table(self, pos: int) -> "_Table":
        vtable = pos - self.uint(pos, 4, signed=True)
        vt_len, table_len = self.uint(vtable, 2), self.uint(vtable + 2, 2)
        if vt_len < 4 or vt_len % 2 or vtable + vt_len > self.n or pos + table_len > self.n:
            raise Broken("a table at byte {} runs past the end of the file ({} bytes)".format(pos, self.n))
        return _Table(self, pos, vtable, vt_len)

    def vector(self, pos: int, elem_size: int) -> int:
        """The length of the vector at ``pos``, its elements inside the file."""
        length = self.uint(pos, 4)
        if pos + 4 + length * elem_size > self.n:
            raise Broken("a vector at byte {} runs past the end of the file ({} bytes)".format(pos, self.n))
        return length


class _Table:
    def __init__(self, reader: _Reader, pos: int, vtable: int, vt_len: int) -> None:
        self.r, self.pos, self.vtable, self.vt_len = reader, pos, vtable, vt_len

    def field(self, index: int) -> Optional[int]:
        """Where field ``index`` is stored, None where it is absent (its default)."""
        slot = 4 + 2 * index
        if slot + 2 > self.vt_len:
            return None
        off = self.r.uint(self.vtable + slot, 2)
        return self.pos + off if off else None

    def ref(self, index: int) -> Optional[int]:
        """Where the table, vector or string that field ``index`` refers to starts."""
        at = self.field(index)
        return None if at is None else at + self.r.uint(at, 4)

    def scalar(self, index: int, size: int, default: int = 0) -> int:
        at = self.field(index)
        return default if at is None else self.r.uint(at, size)

    def vector(self, index: int, elem_size: int) -> int:
        at = self.ref(index)
        return 0 if at is None else self.r.vector(at, elem_size)

    def text(self, index: int, what: str) -> None:
        """Check the string field ``index``: inside the file, and UTF-8 as FlatBuffers strings are (the
        interpreter decodes tensor names and signature keys, and a byte that is not UTF-8 raised there)."""
        at = self.ref(index)
        if at is None:
            return
        n = self.r.vector(at, 1)
        try:
            self.r.data[at + 4:at + 4 + n].decode("utf-8")
        except UnicodeDecodeError:
            raise Broken("a {} is not UTF-8 text".format(what)) from None

    def ints(self, index: int) -> list:
        at = self.ref(index)
        if at is None:
            return []
        return [self.r.uint(at + 4 + 4 * i, 4, signed=True) for i in range(self.r.vector(at, 4))]

    def tables(self, index: int) -> list:
        at = self.ref(index)
        if at is None:
            return []
        out = []
        for i in range(self.r.vector(at, 4)):
            slot = at + 4 + 4 * i
            out.append(self.r.table(slot + self.r.uint(slot, 4)))
        return out


def verify_tflite(data: bytes) -> None:
    """Raise :class:`Broken` where ``data`` is not a .tflite whose tables and vectors lie inside it."""
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise Broken("no FlatBuffer header with the TFL3 identifier")
    r = _Reader(data)
    model = r.table(r.uint(0, 4))
    opcodes = model.tables(1)
    builtin = []
    for code in opcodes:
        code.text(1, "custom operator code")
        # schema 3a moved the code from an int8 to an int32 field; readers take the larger of the two
        builtin.append(max(code.scalar(0, 1, 0), code.scalar(3, 4, 0)))
    buffers = model.tables(4)
    for buf in buffers:
        buf.vector(0, 1)  # data
        offset, size = buf.scalar(1, 8), buf.scalar(2, 8)
        if offset > 1 and offset + size > r.n:  # data kept outside the flatbuffer, later in the file
            raise Broken("a buffer's data runs past the end of the file ({} bytes)".format(r.n))
    model.text(3, "model description")
    for b in model.ints(5):  # metadata_buffer
        _index(b, len(buffers), "buffer")
    for meta in model.tables(6):
        meta.text(0, "metadata name")
        _index(meta.scalar(1, 4), len(buffers), "buffer")
    subgraphs = model.tables(2)
    if not subgraphs:
        raise Broken("the model has no subgraph")
    n_tensors = []
    for sub in subgraphs:
        tensors = sub.tables(0)
        n_tensors.append(len(tensors))
        for t in tensors:
            shape = t.ints(0)
            # a vector may be empty: the new shape of a reshape to a scalar is the constant []
            if len(shape) > 1 and any(d == 0 for d in shape):
                raise Broken("a tensor has a dimension of 0")
            t.text(3, "tensor name")
            t.vector(7, 4)  # shape_signature
            _index(t.scalar(2, 4), max(len(buffers), 1), "buffer")
            q = t.ref(4)
            if q is not None:
                qp = r.table(q)
                for i, size in ((0, 4), (1, 4), (2, 4), (3, 8)):  # min, max, scale, zero_point
                    qp.vector(i, size)
        used = sub.ints(1) + sub.ints(2)
        # Whose data each tensor is: the caller's (a subgraph input), the file's (a constant), or one operator's.
        # An operator writing over another's, the input or a constant segfaulted both interpreters.
        source = {i: "the subgraph's input" for i in sub.ints(1)}
        for i, t in enumerate(tensors):
            b = t.scalar(2, 4)
            if b < len(buffers) and (buffers[b].vector(0, 1) > 0 or buffers[b].scalar(1, 8) > 1):  # data, in or after
                source.setdefault(i, "a constant")
        for k, op in enumerate(sub.tables(3)):
            _index(op.scalar(0, 4), len(opcodes), "opcode")
            code = builtin[op.scalar(0, 4)]
            inputs = op.ints(1)
            for slot, i in enumerate(inputs):
                if i == -1 and code not in _UNCHECKED_INPUTS and _OPTIONAL_INPUT.get(code) != slot:
                    raise Broken("operator {} (builtin code {}) has its input {} marked absent (-1), which only a "
                                 "bias may be".format(k, code, slot))
            for i in op.ints(2):
                _index(i, len(tensors), "tensor")
                if i in source:
                    raise Broken("operator {} writes tensor {}, which is {}".format(k, i, source[i]))
                source[i] = "operator {}'s output".format(k)
            used += [i for i in inputs if i != -1] + [i for i in op.ints(8) if i != -1]
            options = op.ref(4)
            if options is not None:
                r.table(options)
            op.vector(5, 1)  # custom_options
        for i in used:  # -1 in a subgraph's or an operator's outputs is an index out of range too
            _index(i, len(tensors), "tensor")
    for sig in model.tables(7):  # signature_defs: names for a subgraph's input and output tensors
        sig.text(2, "signature key")
        graph = sig.scalar(4, 4)
        _index(graph, len(subgraphs), "subgraph")
        for tensor_map in sig.tables(0) + sig.tables(1):
            tensor_map.text(0, "signature tensor name")
            _index(tensor_map.scalar(1, 4), n_tensors[graph], "tensor")


def _index(i: int, count: int, what: str) -> None:
    if not 0 <= i < count:
        raise Broken("a reference to {} {} of {}".format(what, i, count))
