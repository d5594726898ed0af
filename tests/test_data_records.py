"""`r1jax.data.records`: the reader's errors name the file and the line."""

import pytest

from r1jax.data import records


def test_a_line_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"prompt": "a"}\n{"prompt": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=rf"^{path}:2: not UTF-8 \(invalid continuation byte at byte 15 "):
        records.read_records(str(path))
    with pytest.raises(ValueError, match=rf"^{path}:2: not UTF-8"):
        list(records.text_lines(str(path)))


def test_text_lines_drop_line_ends_and_keep_the_numbers(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"a\r\n\r\n  b\n")
    assert list(records.text_lines(str(path))) == [(f"{path}:1", "a"), (f"{path}:2", ""), (f"{path}:3", "  b")]
    path.write_bytes(b'{"x": 1}\r\n\r\n{"x": 2}')
    assert records.read_records(str(path)) == [(f"{path}:1", {"x": 1}), (f"{path}:3", {"x": 2})]


def test_one_json_array_is_not_json_lines(tmp_path):
    path = tmp_path / "array.jsonl"
    path.write_text('[{"x": 1}, {"x": 2}]\n')
    with pytest.raises(ValueError, match=rf"^{path}:1: expected a JSON object per line, got a list; write one object"):
        records.read_records(str(path))
