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

import dataclasses
import json
import math
import os
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
    tests: list[code_reward.TestCase]  # assert statements and {"input", "output"} stdin/stdout cases


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
    read, prompt, keys = {"math": (read_math_jsonl, prompts.math_prompt, ("question_key", "answer_key")),
                          "code": (read_code_jsonl, prompts.code_prompt,
                                   ("question_key", "tests_key", "skip_unsupported"))}[config.name]
    files = config[config.name]
    train, test = (read(files[split], **{key: files[key] for key in keys}) for split in ("train_file", "test_file"))

    def render(example: Mapping[str, Any]) -> str:
        return prompt(example["question"], template=config.template, renderer=tokenizer)

    return Task(train, test, render, tokenizer.encode_prompt)


def read_code_jsonl(path: str, *, question_key: str = "problem", tests_key: str = "tests",
                    skip_unsupported: bool = False) -> list[CodeExample]:
    """Programming problems from a JSONL file (or any file `r1jax.data.records` reads): the problem
    statement under `question_key`, its test cases under `tests_key` in any layout `code_tests` reads.
    Problems raise ValueError naming the file and line; with `skip_unsupported`, a problem whose tests
    cannot run here (function calls, another language) is left out instead, and the count printed."""
    examples, skipped = [], []
    for where, record, question in _problem_records(path, question_key, key_advice="set data.code.{}"):
        if tests_key not in record:
            raise ValueError(f"{where}: no test cases under {tests_key!r} (the line has fields {sorted(record)}); "
                             "set data.code.tests_key")
        try:
            examples.append(CodeExample(question=question, tests=code_tests(record[tests_key])))
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


def code_tests(value: Any) -> list[code_reward.TestCase]:
    """A problem's test cases in `r1jax.rewards.code`'s form, from the layouts of public code datasets:
      * a list of cases: assert statements (MBPP's `test_list`) or `{"input", "output"}` dicts, where a
        `type`/`testtype` other than stdin is refused (LiveCodeBench's `public_test_cases`);
      * `{"inputs": [...], "outputs": [...]}` (APPS and TACO's `input_output`; an output given as a list
        of lines is joined) or `{"input": [...], "output": [...]}` (CodeContests' `public_tests`);
      * `{"test_cases": [...]}`, a Python problem's (open-r1's `verification_info`);
      * any of these as JSON text, as most Hugging Face datasets store them.
    Function-call tests (`fn_name`, type 'function_call', testtype 'functional') are refused: each dataset
    calls its functions its own way; turn them into assert statements first. ValueError names the problem.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"text that is not JSON ({e.msg} at column {e.colno})") from None
    if isinstance(value, Mapping):
        value = _cases_of_mapping(value)
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list of test cases, got {value!r:.100}")
    cases = []
    for case in value:
        if isinstance(case, Mapping):
            kind = case.get("type", case.get("testtype", "stdin"))
            if kind not in _STDIN_KINDS:
                raise ValueError(f"{kind!r} test cases are not supported (stdin/stdout cases and assert statements "
                                 "are); turn function calls into assert statements")
            case = {"input": case.get("input"), "output": _joined_lines(case.get("output"))}
        cases.append(case)
    code_reward.check_tests(cases)
    return cases


def _cases_of_mapping(value: Mapping[str, Any]) -> Any:
    if value.get("fn_name"):
        raise ValueError(f"function-call tests (fn_name {value['fn_name']!r}) are not supported (stdin/stdout "
                         "cases and assert statements are); turn them into assert statements")
    if value.get("language", "python") != "python":
        raise ValueError(f"the tests are for {value['language']!r}; only Python programs are run")
    if "test_cases" in value:
        return value["test_cases"]
    inputs, outputs = value.get("inputs", value.get("input")), value.get("outputs", value.get("output"))
    if not (isinstance(inputs, list) and isinstance(outputs, list) and len(inputs) == len(outputs)):
        raise ValueError(f"a mapping of tests needs 'inputs' and 'outputs' (or 'input' and 'output') lists of "
                         f"equal length, or 'test_cases'; it has keys {sorted(value)}")
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
