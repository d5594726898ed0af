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
            hint = ("; the file looks like one JSON array: write one object a line (JSON lines)"
                    if kind == "line" and not records and text.lstrip().startswith("[") else "")
            raise ValueError(f"{where}: not a JSON {kind} ({detail}){hint}") from None
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


def json_changes(saved: Mapping[str, Any], current: Mapping[str, Any], prefix: str = "", *,
                 new_keys: bool = True) -> list[str]:
    """`key: old -> new` for every field (dotted) whose value differs between two JSON objects; without
    `new_keys`, fields only `current` has (a newer version's settings) are not changes."""
    changes = []
    for key in sorted(saved.keys() | current.keys() if new_keys else saved.keys()):
        old, new = saved.get(key, "(none)"), current.get(key, "(none)")
        if isinstance(old, dict) and isinstance(new, dict):
            changes += json_changes(old, new, f"{prefix}{key}.", new_keys=new_keys)
        elif old != new:
            changes.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return changes


class ResumableWriter:
    """JSON lines written a batch at a time, which a stopped run continues after its last whole batch.

    After each batch the lines are synced to disk and `<path>.progress` (written beside, then renamed)
    records the batches done, the file's size then, and `signature`: what the batches were made from
    (settings, a hash of the inputs). Opening the file again cuts off anything past that size (a batch the
    process died writing) and counts those batches as done; a file without a progress file starts over.
    A different signature raises ValueError: continuing would mix two runs in one file.
    """

    def __init__(self, path: str, signature: Mapping[str, Any]):
        self.path = path
        self._progress_path = path + ".progress"
        self._signature = json.loads(json.dumps(signature))  # as it reads back from the progress file
        self.batches_done, size = 0, 0
        if os.path.isfile(self._progress_path) and os.path.isfile(path):
            try:
                with open(self._progress_path, encoding="utf-8") as f:
                    progress = json.load(f)
                recorded = {key: progress[key] for key in ("signature", "batches", "bytes")}
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise ValueError(f"{self._progress_path} is unreadable ({error}); delete it and {path} to start "
                                 "again") from None
            progress = recorded
            changes = json_changes(progress["signature"], self._signature)
            if changes:
                raise ValueError(f"{path} holds part of a run of other settings ({'; '.join(changes[:5])}); "
                                 f"delete it and {self._progress_path} to start again, or use another workdir")
            self.batches_done, size = progress["batches"], progress["bytes"]
            if os.path.getsize(path) < size:  # truncating up would pad the file with zero bytes
                raise ValueError(f"{path} is shorter than the {size} bytes {self._progress_path} records; "
                                 "delete both to start again")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._file = open(path, "r+b" if size else "wb")
        self._file.truncate(size)
        self._file.seek(size)

    def write_batch(self, batch: Iterable[Mapping[str, Any]]) -> None:
        """Appends a batch's records and records it as done once they are on disk."""
        self._file.write(b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in batch))
        self._file.flush()
        os.fsync(self._file.fileno())
        self.batches_done += 1
        partial = self._progress_path + ".partial"
        with open(partial, "w", encoding="utf-8") as f:
            json.dump(dict(batches=self.batches_done, bytes=self._file.tell(), signature=self._signature), f)
        os.replace(partial, self._progress_path)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
