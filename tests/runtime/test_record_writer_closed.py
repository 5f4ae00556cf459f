"""A record written after RecordWriter.close() used to vanish without a word."""
from __future__ import annotations

import pytest

from edgeexit.errors import OutputError
from edgeexit.records import RecordWriter


@pytest.mark.parametrize("where", ["file", "-", None])
def test_writing_after_close_is_an_output_error(tmp_path, where):
    path = tmp_path / "r.jsonl" if where == "file" else where
    w = RecordWriter(path)
    w.write({"index": 0})
    w.close()
    w.close()  # closing twice stays harmless
    with pytest.raises(OutputError, match=r"^this RecordWriter \(to .*\) is closed; write every record before closing it"):
        w.write({"index": 1})
    if where == "file":
        assert path.read_text() == '{"index":0}\n'
