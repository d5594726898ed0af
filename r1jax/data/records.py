"""JSON records in local files, the one reader and writer of every dataset file (SFT data, distilled traces,
math problems).

A file is JSON lines (one object a line, blank lines skipped) or, when its name ends in `.array_record`,
an ArrayRecord file whose records are UTF-8 JSON objects (random access, no TensorFlow). Every problem is a
ValueError naming the file and the line (`file:3`) or record (`file[3]`).
"""

from __future__ import annotations

import filecmp
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

ARRAY_RECORD_SUFFIX = ".array_record"

Record = dict[str, Any]


def _raw_records(path: str) -> Iterator[tuple[str, str | bytes]]:
    if path.endswith(ARRAY_RECORD_SUFFIX):
        from array_record.python import array_record_data_source  # only files of this kind need it

        source = array_record_data_source.ArrayRecordDataSource([path])
        for index in range(len(source)):
            yield f"{path}[{index}]", source[index]
        return
    for where, line in text_lines(path):
        if line.strip():
            yield where, line


def text_lines(path: str) -> Iterator[tuple[str, str]]:
    """`(file:line, text without its line end)` for every line of a UTF-8 text file; a line that is not
    UTF-8 is a ValueError naming it (decoding while reading would name neither the file nor the line)."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}:{number}: not UTF-8 ({e.reason} at byte {e.start} of the line: "
                                 f"{line[e.start:e.end]!r}); save the file as UTF-8") from None
            yield f"{path}:{number}", text.rstrip("\r\n")


def read_records(path: str, *, what: str = "records") -> list[tuple[str, Record]]:
    """`(location, object)` for every record of `path`; `what` names them in the error for an empty file."""
    if not os.path.isfile(path):
        raise ValueError(f"{path!r} is not a file")
    kind = "record" if path.endswith(ARRAY_RECORD_SUFFIX) else "line"
    records = []
    for where, text in _raw_records(path):
        try:
            record = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            detail = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else str(e)
            raise ValueError(f"{where}: not a JSON {kind} ({detail})") from None
        if not isinstance(record, dict):
            hint = "; write one object a line, not one array of them" if isinstance(record, list) else ""
            raise ValueError(f"{where}: expected a JSON object per {kind}, got a {type(record).__name__}{hint}")
        records.append((where, record))
    if not records:
        raise ValueError(f"{path}: no {what} in the file")
    return records


def write_records(path: str, records: Iterable[Mapping[str, Any]]) -> int:
    """Writes JSON lines to `path`, which appears complete or not at all; returns the count.

    A file already there with the same lines is left untouched, so what was derived from it (SFT's packed
    rows, keyed by path, size and mtime) stays valid when a run writes the same synthetic data again."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    partial = path + ".partial"
    count = 0
    with open(partial, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    if os.path.exists(path) and filecmp.cmp(partial, path, shallow=False):
        os.remove(partial)
    else:
        os.replace(partial, path)
    return count
