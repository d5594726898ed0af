"""Public math benchmarks (GSM8K, MATH-500, AIME 2024) as TFDS datasets built from files you download.

Nothing is downloaded here: put the benchmark's file in a folder (`manual_dir`) and the builder
reads it into ArrayRecord under `data_dir`, read back with `tfds` data sources, without TensorFlow
(the approach of `r1jax.data.countdown`). Every example is `{"question", "answer"}` with the gold
final answer as text, the fields the 'math' reward reads. One split, 'test'.

Expected files (name in `manual_dir`, then where to get it):

* gsm8k: `test.jsonl`, GSM8K's test split, 1319 lines `{"question": ..., "answer": "... #### 72"}`:
  https://github.com/openai/grade-school-math/raw/master/grade_school_math/data/test.jsonl
  (or openai/gsm8k on Hugging Face, config 'main', parquet: convert it as below). The gold answer is
  the text after `####`.
* math500: `test.jsonl`, the 500 MATH problems of "Let's Verify Step by Step",
  `{"problem": ..., "answer": ...}` (also `solution`, `subject`, `level`):
  https://huggingface.co/datasets/HuggingFaceH4/MATH-500/resolve/main/test.jsonl
* aime2024: `aime_2024.jsonl`, the 30 AIME 2024 problems, one JSON object a line with
  `Problem`/`Answer` (Maxwell-Jia/AIME_2024) or `problem`/`answer` (HuggingFaceH4/aime_2024). Both are
  parquet on Hugging Face; convert a parquet file once with

      python -c "import pandas as pd; pd.read_parquet('FILE.parquet').to_json('aime_2024.jsonl',
                 orient='records', lines=True)"


The prepared dataset remembers the SHA-256 of the file it was built from; when `manual_dir` holds a
different file (edited, or another folder), it is rebuilt.

    source = load("gsm8k", manual_dir="/data/gsm8k", data_dir="/data/tfds")
    source[0]  # {"question": "Janet's ducks lay 16 eggs ...", "answer": "18"}
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

from r1jax.data import records
from r1jax.data.countdown import DecodedSource
from r1jax.data.tasks import MathExample, read_math_jsonl


@dataclasses.dataclass(eq=False, kw_only=True)
class BenchmarkConfig(tfds.core.BuilderConfig):
    """Where a benchmark's file is and which fields of its lines hold the question and the answer."""

    file_name: str = ""
    question_keys: tuple[str, ...] = ()  # the first one the file's first line has is used
    answer_keys: tuple[str, ...] = ()
    answer_after_marker: bool = False  # GSM8K: the gold answer is what follows `####` in the answer field
    source: str = ""  # where to get the file


BENCHMARKS: dict[str, BenchmarkConfig] = {config.name: config for config in (
    BenchmarkConfig(
        name="gsm8k", description="GSM8K test split (1319 grade-school word problems).", file_name="test.jsonl",
        question_keys=("question",), answer_keys=("answer",), answer_after_marker=True,
        source="https://github.com/openai/grade-school-math/raw/master/grade_school_math/data/test.jsonl"),
    BenchmarkConfig(
        name="math500", description="MATH-500 (Lightman et al. 2023's test subset of MATH).",
        file_name="test.jsonl", question_keys=("problem",), answer_keys=("answer",),
        source="https://huggingface.co/datasets/HuggingFaceH4/MATH-500/resolve/main/test.jsonl"),
    BenchmarkConfig(
        name="aime2024", description="AIME 2024 (30 problems, integer answers 0-999).", file_name="aime_2024.jsonl",
        question_keys=("Problem", "problem"), answer_keys=("Answer", "answer"),
        source="Maxwell-Jia/AIME_2024 or HuggingFaceH4/aime_2024 on Hugging Face, its parquet converted to JSONL "
               "(see r1jax/data/benchmarks.py)"),
)}


def check_manual_dir(name: str, manual_dir: str) -> None:
    """Raises ValueError, one line naming the file and where to put it, when `name`'s file is not in `manual_dir`."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
    config = BENCHMARKS[name]
    if not manual_dir:
        raise ValueError(f"manual_dir is not set; download {name}'s {config.file_name} ({config.source}) into a "
                         "folder and set manual_dir to it")
    path = os.path.join(manual_dir, config.file_name)
    if not os.path.isfile(path):
        raise ValueError(f"{path} does not exist; download {name}'s {config.file_name} ({config.source}) and put it "
                         f"there")


def _first_key(path: str, keys: tuple[str, ...]) -> str:
    """The first of `keys` that the file's first non-blank JSON line has (the first key if none has one)."""
    line = next((line for _, line in records.text_lines(path) if line.strip()), "{}")
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return keys[0]  # read_math_jsonl names the bad line
    return next((key for key in keys if isinstance(record, dict) and key in record), keys[0])


def read_benchmark(config: BenchmarkConfig, path: str) -> list[MathExample]:
    """The examples of a benchmark file; bad lines raise ValueError naming the file and line."""
    advice = (f"{config.name} reads the question from {' or '.join(config.question_keys)} and the answer from "
              f"{' or '.join(config.answer_keys)}: is the file {config.source}?")
    examples = read_math_jsonl(path, question_key=_first_key(path, config.question_keys),
                               answer_key=_first_key(path, config.answer_keys), key_advice=advice)
    if config.answer_after_marker:
        for number, example in enumerate(examples, start=1):
            final = example["answer"].rsplit("####", 1)[1].strip() if "####" in example["answer"] else ""
            if not final:
                raise ValueError(f"{path}: example {number}'s answer has no '#### <final answer>'")
            example["answer"] = final
    return examples


class MathBenchmark(tfds.core.GeneratorBasedBuilder):
    """Math benchmarks read from a local file; one config per benchmark (`BENCHMARKS`), split 'test'."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = list(BENCHMARKS.values())
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put the benchmark's file in manual_dir; see r1jax/data/benchmarks.py."
    builder_config: BenchmarkConfig

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(__file__)  # see countdown.Countdown.code_path

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.builder_config.description,
            features=tfds.features.FeaturesDict({"question": tfds.features.Text(), "answer": tfds.features.Text()}),
            supervised_keys=None,
            disable_shuffling=True,  # keep the file's order, so the first N examples are the file's first N
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Iterator[tuple[int, Any]]]:
        return {"test": self._generate_examples(dl_manager.manual_dir / self.builder_config.file_name)}

    def _generate_examples(self, path: epath.Path) -> Iterator[tuple[int, MathExample]]:
        yield from enumerate(read_benchmark(self.builder_config, os.fspath(path)))


def _to_math_example(record: dict[str, Any]) -> MathExample:
    return MathExample(question=record["question"].decode("utf-8"), answer=record["answer"].decode("utf-8"))


def load(name: str, *, manual_dir: str, data_dir: str | os.PathLike[str]) -> DecodedSource[MathExample]:
    """The test split of benchmark `name`, built under `data_dir` from `manual_dir`'s file when that file is
    not the one it was built from."""
    check_manual_dir(name, manual_dir)
    source_file = os.path.join(manual_dir, BENCHMARKS[name].file_name)
    with open(source_file, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    builder = MathBenchmark(config=name, data_dir=os.fspath(data_dir), file_format="array_record")
    digest_file = os.path.join(builder.data_dir, _SOURCE_DIGEST)
    if os.path.isdir(builder.data_dir) and _read_text(digest_file) != digest:
        print(f"{source_file} is not the file {builder.data_dir} was built from; rebuilding it", flush=True)
        shutil.rmtree(builder.data_dir)
        builder = MathBenchmark(config=name, data_dir=os.fspath(data_dir), file_format="array_record")
    with contextlib.redirect_stdout(io.StringIO()):  # TFDS's size notes, as in countdown.build
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    if _read_text(digest_file) != digest:
        with open(digest_file, "w") as f:  # a torn write only means one more rebuild
            f.write(digest)
    return DecodedSource(builder.as_data_source("test"), _to_math_example)


_SOURCE_DIGEST = "source.sha256"


def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None
