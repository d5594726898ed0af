"""`r1jax.data.records`: the reader's errors name the file and the line; the resumable writer."""

import json

import numpy as np
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
    path.write_text('[\n  {"x": 1},\n  {"x": 2}\n]\n')  # pretty-printed
    with pytest.raises(ValueError, match=rf"^{path}:1: not a JSON line \(.*\); the file looks like one JSON array"):
        records.read_records(str(path))


def _batches(seed: int, count: int) -> list[list[dict]]:
    """Batches of 1-4 records with text of varied length (and non-ASCII characters)."""
    rng = np.random.default_rng(seed)
    return [[{"i": int(i), "text": "é" * int(rng.integers(0, 9)) + "x" * int(rng.integers(0, 40))}
             for i in range(rng.integers(1, 5))] for _ in range(count)]


@pytest.mark.parametrize("seed", range(4))
def test_a_writer_stopped_anywhere_continues_to_the_file_of_an_uninterrupted_run(tmp_path, seed):
    batches = _batches(seed, 6)
    signature = {"config": {"seed": seed}, "inputs": "abc"}
    whole = tmp_path / "whole.jsonl"
    with records.ResumableWriter(str(whole), signature) as out:
        for batch in batches:
            out.write_batch(batch)
    assert [json.loads(line) for line in whole.read_text(encoding="utf-8").splitlines()] == sum(batches, [])

    path = tmp_path / "stopped.jsonl"
    stop = np.random.default_rng(seed).integers(0, len(batches))
    with records.ResumableWriter(str(path), signature) as out:
        for batch in batches[:stop]:
            out.write_batch(batch)
    with open(path, "ab") as f:  # the process died halfway through the next batch
        f.write(b'{"i": 0, "text": "half a li')
    with records.ResumableWriter(str(path), signature) as out:
        assert out.batches_done == stop
        for batch in batches[out.batches_done:]:
            out.write_batch(batch)
    assert path.read_bytes() == whole.read_bytes()


def test_a_writer_refuses_other_settings_and_a_cut_file_and_starts_over_without_progress(tmp_path):
    path = tmp_path / "out.jsonl"
    with records.ResumableWriter(str(path), {"config": {"temperature": 1.0, "seed": 0}}) as out:
        out.write_batch([{"a": 1}])
    with pytest.raises(ValueError, match=r"holds part of a run of other settings \(config.temperature: 1.0 -> 0.5\); "
                                         r"delete it and .*out.jsonl.progress"):
        records.ResumableWriter(str(path), {"config": {"temperature": 0.5, "seed": 0}})
    path.write_text("")
    with pytest.raises(ValueError, match=r"out.jsonl is shorter than the 9 bytes .*out.jsonl.progress records"):
        records.ResumableWriter(str(path), {"config": {"temperature": 1.0, "seed": 0}})
    for broken in ("", '{"batches": 1}', "[1, 2]"):  # a progress file cut short or edited by hand
        (tmp_path / "out.jsonl.progress").write_text(broken)
        with pytest.raises(ValueError, match=r"out.jsonl.progress is unreadable \(.*\); delete it and .*out.jsonl"):
            records.ResumableWriter(str(path), {"config": {"temperature": 1.0, "seed": 0}})
    (tmp_path / "out.jsonl.progress").unlink()
    with records.ResumableWriter(str(path), {"config": {"temperature": 0.5, "seed": 0}}) as out:
        assert out.batches_done == 0
        out.write_batch([{"b": 2}])
    assert path.read_text() == '{"b": 2}\n'
