"""Tasks for RL and evaluation: where examples come from and how an example becomes a prompt.

A task pairs a dataset (train and test splits with random access) with a prompt renderer. The
trainer only sees `train_examples` (an endless, resumable shuffled stream), `test_examples` and
`prompt_tokens`.

* 'countdown': TinyZero's arithmetic puzzles, generated locally (`r1jax.data.countdown`).
* 'math': word problems read from local JSONL files (`data.math`); every example is
  `{"question", "answer"}`, the fields the 'math' reward reads.
* 'code': programming problems with test cases, read from local JSONL files (`data.code`); every
  example is `{"question", "tests"}`, the fields the 'code' reward reads (`read_code_jsonl` takes the
  layouts of the public code datasets).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import os
import pickle
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypedDict

import ml_collections
import tensorflow_datasets as tfds

from r1jax.data import countdown, prompts, records
from r1jax.rewards import code as code_reward
from r1jax.rewards import math as math_reward

TASKS = ("countdown", "math", "code")


class MathExample(TypedDict):
    question: str
    answer: str  # the gold final answer, as text


class CodeExample(TypedDict):
    question: str
    tests: list[code_reward.TestCase]  # assert statements, stdin/stdout cases and function calls
    starter_code: str  # what the solution starts from (a function's signature), or ""


@dataclasses.dataclass
class Task:
    train: countdown.RandomAccessSource
    test: countdown.RandomAccessSource
    render_prompt: Callable[[Mapping[str, Any]], str]
    encode_prompt: Callable[[str], list[int]]  # BOS first where the tokenizer has one

    def prompt_tokens(self, example: Mapping[str, Any]) -> list[int]:
        return self.encode_prompt(self.render_prompt(example))

    def train_examples(self, *, seed: int, start_index: int) -> Iterator[tuple[int, Mapping[str, Any]]]:
        """(position, example) pairs; resume a stream by passing the last position + 1."""
        return countdown.iterate(self.train, seed=seed, start_index=start_index)

    def test_examples(self, limit: int) -> list[Mapping[str, Any]]:
        return [self.test[i] for i in range(min(limit, len(self.test)))]


def load_task(config: ml_collections.ConfigDict, tokenizer, workdir: str) -> Task:
    """The task of a run config's `data` section: Countdown data is built under `data.data_dir` on first use,
    math problems are read from `data.math`'s files."""
    if config.name not in TASKS:
        raise ValueError(f"data.name {config.name!r} is not one of {TASKS}")
    if config.name in ("math", "code"):
        return _problem_task(config, tokenizer)
    data_dir = config.data_dir or os.path.join(workdir, "data")
    tfds.disable_progress_bar()  # the run's own progress output is what matters
    builder_config = countdown.CountdownConfig(**dict(config.countdown))
    train = countdown.load("train", data_dir=data_dir, config=builder_config)
    test = countdown.load("test", data_dir=data_dir, config=builder_config)

    def render(example: Mapping[str, Any]) -> str:
        return prompts.countdown_prompt(example["nums"], example["target"], template=config.template,
                                        renderer=tokenizer)

    return Task(train, test, render, tokenizer.encode_prompt)


def _problem_task(config: ml_collections.ConfigDict, tokenizer) -> Task:
    """Problems read from the JSONL files of `data.math` or `data.code`, prompted with the task's template."""
    train, test = (read_problems(config.name, config[config.name], split) for split in ("train_file", "test_file"))

    def render(example: Mapping[str, Any]) -> str:
        return problem_prompt(config.name, example, template=config.template, renderer=tokenizer)

    return Task(train, test, render, tokenizer.encode_prompt)


def read_problems(task: str, files: ml_collections.ConfigDict, file_key: str) -> list[MathExample] | list[CodeExample]:
    """The problems of the file `files[file_key]`, read with the field names of a `data.math` or `data.code` section."""
    if task == "math":
        return read_math_jsonl(files[file_key], question_key=files.question_key, answer_key=files.answer_key)
    return read_code_jsonl(files[file_key], question_key=files.question_key, tests_key=files.tests_key,
                           starter_code_key=files.starter_code_key, skip_unsupported=files.skip_unsupported)


def problem_prompt(task: str, example: Mapping[str, Any], *, template: str,
                   renderer: prompts.ChatTemplateRenderer | None) -> str:
    """The prompt text of a math or programming problem."""
    if task == "code":
        return prompts.code_prompt(example["question"], starter_code=example.get("starter_code", ""),
                                   template=template, renderer=renderer)
    return prompts.math_prompt(example["question"], template=template, renderer=renderer)


def read_code_jsonl(path: str, *, question_key: str = "problem", tests_key: str = "tests",
                    starter_code_key: str = "starter_code", skip_unsupported: bool = False) -> list[CodeExample]:
    """Programming problems from a JSONL file (or any file `r1jax.data.records` reads): the problem
    statement under `question_key`, its test cases under `tests_key` in any layout `code_tests` reads
    (a function's name may come from the line's `metadata.func_name`, as in LiveCodeBench), and the code
    the solution starts from, if any, under `starter_code_key` (APPS, TACO and LiveCodeBench's
    `starter_code`: a function's signature). Problems raise ValueError naming the file and line; with
    `skip_unsupported`, a problem whose tests cannot run here (another language, a kind of test case
    not read here) is left out instead, and the count printed."""
    examples, skipped = [], []
    for where, record, question in _problem_records(path, question_key, key_advice="set data.code.{}"):
        if tests_key not in record:
            raise ValueError(f"{where}: no test cases under {tests_key!r} (the line has fields {sorted(record)}); "
                             "set data.code.tests_key")
        starter_code = record.get(starter_code_key) or ""
        if not isinstance(starter_code, str):
            raise ValueError(f"{where}: the starter code under {starter_code_key!r} is not text: {starter_code!r:.100}")
        try:
            tests = code_tests(record[tests_key], function_name=_function_name(record.get("metadata")))
            examples.append(CodeExample(question=question, tests=tests, starter_code=starter_code))
        except (TypeError, ValueError) as e:
            if not skip_unsupported:
                raise ValueError(f"{where}: the tests under {tests_key!r}: {e}; or set data.code.skip_unsupported "
                                 "to leave such problems out") from None
            skipped.append(f"{where}: {e}")
    if skipped:
        print(f"{path}: left out {len(skipped)} of {len(skipped) + len(examples)} problems whose tests cannot run "
              f"here (the first: {skipped[0]})", flush=True)
    if not examples:
        raise ValueError(f"{path}: no problem has tests that can run here")
    return examples


def _function_name(metadata: Any) -> str | None:
    """LiveCodeBench's `metadata.func_name` (its metadata is JSON text)."""
    try:
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
    except json.JSONDecodeError:
        return None
    return metadata.get("func_name") if isinstance(metadata, Mapping) else None


def _problem_records(path: str, question_key: str, key_advice: str) -> Iterator[tuple[str, dict[str, Any], str]]:
    """`(location, record, question text)` of every problem of a file; ValueError naming the line of one
    without a question, whose message ends with `key_advice` formatted with 'question_key'."""
    if not os.path.isfile(path):
        raise ValueError(f"{path!r} is not a file; point it at a JSONL file with one problem a line")
    for where, record in records.read_records(path, what="problems"):
        question = record.get(question_key)
        if not isinstance(question, str) or not question.strip():
            raise ValueError(f"{where}: no question text under {question_key!r} (the line has fields "
                             f"{sorted(record)}); {key_advice.format('question_key')}")
        yield where, record, question


_STDIN_KINDS = ("stdin", "stdin_stdout")  # LiveCodeBench's testtype, open-r1's type


def code_tests(value: Any, *, function_name: str | None = None) -> list[code_reward.TestCase]:
    """A problem's test cases in `r1jax.rewards.code`'s form, from the layouts of public code datasets:
      * a list of cases: assert statements (MBPP's `test_list`), `{"input", "output"}` stdin/stdout dicts,
        or function calls: LiveCodeBench's testtype 'functional' (`public_test_cases`: the arguments one JSON
        value a line, the return value as JSON; the function is `function_name`, its `metadata.func_name`)
        and open-r1's type 'function_call' (`fn_name`, the arguments as a JSON list, the return value as APPS
        gives it); cases already in `r1jax.rewards.code`'s form are kept;
      * `{"inputs": [...], "outputs": [...]}` (APPS and TACO's `input_output`; an output given as a list
        of lines is joined; with `fn_name`, each input is a list of arguments and each output the return
        value in a one-element list) or `{"input": [...], "output": [...]}` (CodeContests' `public_tests`);
      * `{"test_cases": [...]}`, a Python problem's (open-r1's `verification_info`);
      * any of these as JSON text, as most Hugging Face datasets store them, or compressed as LiveCodeBench
        keeps its `private_test_cases` (base64 of zlib of a pickled JSON text; no pickled object is loaded).
    ValueError names what cannot run here.
    """
    if isinstance(value, str) and not value.lstrip().startswith(("[", "{")):
        value = _livecodebench_decompressed(value)
    value = _json_text_read(value, "text that is not JSON")
    if isinstance(value, Mapping):
        value = _cases_of_mapping(value)
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of test cases, got {value!r:.100}")
    cases = [_case(case, function_name) if isinstance(case, Mapping) else case for case in value]
    code_reward.check_tests(cases)
    return cases


def _case(case: Mapping[str, Any], function_name: str | None) -> Mapping[str, Any]:
    """One test case of a list, in `r1jax.rewards.code`'s form."""
    if "function" in case:
        return case
    kind = case.get("type", case.get("testtype", "stdin"))
    if kind in _STDIN_KINDS:
        return {"input": case.get("input"), "output": _joined_lines(case.get("output"))}
    if kind == "functional":
        metadata = _json_text_read(case.get("metadata") or {}, "metadata that is not JSON")
        name = metadata.get("func_name", function_name) if isinstance(metadata, Mapping) else function_name
        if not name:
            raise ValueError("a 'functional' test case with no function name (LiveCodeBench keeps it under the "
                             "problem's metadata.func_name)")
        if not isinstance(case.get("input"), str):
            raise ValueError(f"a 'functional' test case's input is its arguments as JSON lines, got "
                             f"{case.get('input')!r:.100}")
        arguments = [_json_text_read(line, "an argument line that is not JSON") for line in case["input"].split("\n")]
        return {"function": name, "args": arguments,
                "output": _json_text_read(case.get("output"), "an output that is not JSON")}
    if kind == "function_call":
        return {"function": case.get("fn_name"),
                "args": _json_text_read(case.get("input"), "an input that is not JSON"),
                "output": _json_text_read(case.get("output"), "an output that is not JSON"), "wrapped": True}
    raise ValueError(f"{kind!r} test cases are not supported (stdin/stdout cases, function calls and assert "
                     "statements are)")


_DECOMPRESSED_TESTS_MAX_BYTES = 1 << 30


class _TextOnlyUnpickler(pickle.Unpickler):
    """Loads pickled built-in values only: without `find_class` no pickle can name a function to call."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the pickle names {module}.{name}; only pickled text is read")


def _livecodebench_decompressed(value: str) -> str:
    """The JSON text of LiveCodeBench's compressed test cases; `value` itself where it is not in that form."""
    try:
        compressed = base64.b64decode(value, validate=True)
        inflater = zlib.decompressobj()
        pickled = inflater.decompress(compressed, _DECOMPRESSED_TESTS_MAX_BYTES)
    except (ValueError, zlib.error):
        return value
    if inflater.unconsumed_tail:
        raise ValueError(f"compressed test cases of more than {_DECOMPRESSED_TESTS_MAX_BYTES >> 20} MiB")
    try:
        text = _TextOnlyUnpickler(io.BytesIO(pickled)).load()
    except Exception as e:  # a malformed pickle raises many kinds of error
        raise ValueError(f"compressed test cases that do not unpickle: {e}") from None
    if not isinstance(text, str):
        raise ValueError(f"compressed test cases hold a {type(text).__name__}, not JSON text")
    return text


def _json_text_read(value: Any, what: str) -> Any:
    """`value` read as JSON if it is text, else as it is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} ({e.msg} at column {e.colno}): {value!r:.100}") from None


def _cases_of_mapping(value: Mapping[str, Any]) -> Any:
    if value.get("language", "python") != "python":
        raise ValueError(f"the tests are for {value['language']!r}; only Python programs are run")
    if "test_cases" in value:
        return value["test_cases"]
    inputs, outputs = value.get("inputs", value.get("input")), value.get("outputs", value.get("output"))
    if not (isinstance(inputs, list) and isinstance(outputs, list) and len(inputs) == len(outputs)):
        raise ValueError(f"a mapping of tests needs 'inputs' and 'outputs' (or 'input' and 'output') lists of "
                         f"equal length, or 'test_cases'; it has keys {sorted(value)}")
    if value.get("fn_name"):
        return [{"function": value["fn_name"], "args": i, "output": o, "wrapped": True}
                for i, o in zip(inputs, outputs)]
    return [{"input": i, "output": o} for i, o in zip(inputs, outputs)]


def _joined_lines(output: Any) -> Any:
    """APPS and TACO give some expected outputs as a list of lines."""
    is_lines = isinstance(output, list) and all(isinstance(line, str) for line in output)
    return "\n".join(output) if is_lines else output


def read_math_jsonl(path: str, *, question_key: str = "problem", answer_key: str = "answer",
                    key_advice: str = "set data.math.{}") -> list[MathExample]:
    """Math problems from a JSONL file (one JSON object per line, blank lines skipped; or any file
    `r1jax.data.records` reads).

    A line needs the question text under `question_key` and the gold answer under `answer_key` (text
    or a number); without a usable answer there, the last `\\boxed{...}` of a `solution` field is
    taken (the MATH dataset's layout). Problems raise ValueError naming the file and line; a missing
    field's error ends with `key_advice`, formatted with 'question_key' or 'answer_key'.
    """
    examples = []
    for where, record, question in _problem_records(path, question_key, key_advice):
        if isinstance(record.get(answer_key), float) and not math.isfinite(record[answer_key]):
            raise ValueError(f"{where}: the answer under {answer_key!r} is {record[answer_key]}, not a number")
        answer = _gold_answer(record, answer_key)
        if answer is None:
            raise ValueError(f"{where}: no answer under {answer_key!r} and no \\boxed{{...}} in a 'solution' "
                             f"field (the line has fields {sorted(record)}); {key_advice.format('answer_key')}")
        examples.append(MathExample(question=question, answer=answer))
    return examples


def _gold_answer(record: Mapping[str, Any], answer_key: str) -> str | None:
    answer = record.get(answer_key)
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return math_reward.gold_text(answer)
    if isinstance(answer, str) and answer.strip():
        return answer.strip()
    solution = record.get("solution")
    boxed = math_reward.last_boxed(solution) if isinstance(solution, str) else None
    return boxed.strip() if boxed and boxed.strip() else None
