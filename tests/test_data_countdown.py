"""Countdown dataset builder, resumable iterator and prompt templates.

Solutions are checked with this file's own evaluator (Python's `ast` + exact fractions), independent
of the parser the library and the reward use.
"""
from __future__ import annotations

import ast
import importlib.util
import itertools
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest
from chatml import ChatML

from r1jax.data import countdown, prompts
from r1jax.data.countdown import CountdownConfig, CountdownExample
from r1jax.rewards import countdown as countdown_reward

SMALL = CountdownConfig(train_size=600, test_size=100, seed=7)


def _checked_value(solution: str) -> tuple[Fraction, list[int]]:
    """Exact value of `solution` and the numbers it uses; asserts every intermediate is a positive integer."""
    used: list[int] = []
    operators = {
        ast.Add: lambda a, b: a + b,
        ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b,
    }

    def value(node: ast.expr) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used.append(node.value)
            return Fraction(node.value)
        assert isinstance(node, ast.BinOp) and type(node.op) in operators, ast.dump(node)
        result = operators[type(node.op)](value(node.left), value(node.right))
        assert result.denominator == 1 and result > 0, f"intermediate {result} in {solution!r}"
        return result

    return value(ast.parse(solution, mode="eval").body), used


def _assert_valid(example: CountdownExample, config: CountdownConfig) -> None:
    nums, target = example["nums"], example["target"]
    assert config.min_count <= len(nums) <= config.max_count
    assert all(config.min_number <= n <= config.max_number for n in nums)
    assert config.min_target <= target <= config.max_target
    solution_value, used = _checked_value(example["solution"])
    assert solution_value == target, example
    assert sorted(used) == sorted(nums), example


def _problem_key(example: CountdownExample) -> tuple[tuple[int, ...], int]:
    return tuple(sorted(example["nums"])), example["target"]


def _every_example(source: countdown.DecodedSource) -> list[CountdownExample]:
    return source.__getitems__(range(len(source)))


def _read_all(config: CountdownConfig, data_dir: Path) -> dict[str, list[CountdownExample]]:
    return {
        split: _every_example(countdown.load(split, data_dir=data_dir, config=config)) for split in ("train", "test")
    }


@pytest.fixture(scope="module")
def default_splits() -> dict[str, list[CountdownExample]]:
    # What the builder stores, without the TFDS round trip (test_stored_data_is_what_was_generated).
    test, train = countdown.generate_splits(countdown.DEFAULT_CONFIG)
    return {"train": train, "test": test}


def _canonical(examples: list[CountdownExample]) -> list[CountdownExample]:
    return sorted(examples, key=lambda example: (example["nums"], example["target"], example["solution"]))


def test_default_build_has_valid_solutions(default_splits: dict[str, list[CountdownExample]]) -> None:
    assert len(default_splits["train"]) == countdown.DEFAULT_CONFIG.train_size == 32768
    assert len(default_splits["test"]) == countdown.DEFAULT_CONFIG.test_size == 1024
    for example in itertools.chain(*default_splits.values()):
        _assert_valid(example, countdown.DEFAULT_CONFIG)
    # TinyZero's task: 3 and 4 numbers both occur.
    assert {len(example["nums"]) for example in default_splits["train"]} == {3, 4}


def test_reference_solutions_earn_full_reward(default_splits: dict[str, list[CountdownExample]]) -> None:
    for example in default_splits["test"]:
        completion = f"<think>...</think> <answer>{example['solution']}</answer>"
        assert countdown_reward.score(completion, example["nums"], example["target"]) == 1.0


def test_splits_are_disjoint_and_free_of_duplicates(default_splits: dict[str, list[CountdownExample]]) -> None:
    train = {_problem_key(example) for example in default_splits["train"]}
    test = {_problem_key(example) for example in default_splits["test"]}
    assert len(train) == len(default_splits["train"]) and len(test) == len(default_splits["test"])
    assert not train & test


def test_stored_data_is_what_was_generated(tmp_path: Path) -> None:
    stored = _read_all(SMALL, tmp_path)
    test, train = countdown.generate_splits(SMALL)
    # TFDS stores records in an order of its own (hashed keys), so compare as multisets.
    assert _canonical(stored["train"]) == _canonical(train)
    assert _canonical(stored["test"]) == _canonical(test)


def test_builds_in_different_dirs_are_identical(tmp_path: Path) -> None:
    first = _read_all(SMALL, tmp_path / "first")
    second = _read_all(SMALL, tmp_path / "second")
    assert first == second
    other_seed = _read_all(CountdownConfig(train_size=600, test_size=100, seed=8), tmp_path / "first")
    assert other_seed["test"] != first["test"]


def test_test_split_does_not_depend_on_train_size() -> None:
    small_test, small_train = countdown.generate_splits(CountdownConfig(train_size=200, test_size=50))
    test, train = countdown.generate_splits(CountdownConfig(train_size=400, test_size=50))
    assert small_test == test
    assert small_train == train[:200]


def test_config_knobs_are_honoured(tmp_path: Path) -> None:
    config = CountdownConfig(
        min_count=5, max_count=6, min_number=10, max_number=20, min_target=50, max_target=60,
        train_size=300, test_size=40, seed=3,
    )
    splits = _read_all(config, tmp_path)
    assert (len(splits["train"]), len(splits["test"])) == (300, 40)
    for example in itertools.chain(*splits.values()):
        _assert_valid(example, config)
    assert {len(example["nums"]) for example in splits["train"]} == {5, 6}


def test_configs_are_named_after_their_knobs() -> None:
    assert CountdownConfig().name != CountdownConfig(max_number=50).name
    assert CountdownConfig(seed=1).name == CountdownConfig(seed=1).name
    assert CountdownConfig(name="mine").name == "mine"


@pytest.mark.parametrize(
    "knobs",
    [
        {"min_count": 1, "max_count": 1},
        {"min_count": 4, "max_count": 3},
        {"min_number": 0},
        {"min_target": 10, "max_target": 9},
        {"test_size": 0},
    ],
)
def test_invalid_configs_are_rejected(knobs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        CountdownConfig(**knobs)


def test_too_few_distinct_problems_raises() -> None:
    # Two 1s make only "1 + 1 = 2" and "1 * 1 = 1 / 1 = 1": two distinct problems.
    config = CountdownConfig(min_count=2, max_count=2, max_number=1, max_target=2, train_size=1, test_size=2)
    with pytest.raises(ValueError, match="distinct problems"):
        countdown.generate_splits(config)


def test_iterate_visits_each_example_once_per_epoch() -> None:
    source = list(range(10))
    stream = [example for _, example in itertools.islice(countdown.iterate(source, seed=1), 30)]
    epochs = [stream[start : start + 10] for start in (0, 10, 20)]
    assert all(sorted(epoch) == source for epoch in epochs)
    assert epochs[0] != epochs[1]
    other_seed = [example for _, example in itertools.islice(countdown.iterate(source, seed=2), 10)]
    assert other_seed != epochs[0]


@pytest.mark.parametrize("start_index", [0, 1, 9, 10, 11, 25, 1000])
def test_iterate_resumes_exactly(start_index: int) -> None:
    source = [f"example-{i}" for i in range(10)]
    uninterrupted = list(itertools.islice(countdown.iterate(source, seed=5), start_index + 15))
    resumed = list(itertools.islice(countdown.iterate(source, seed=5, start_index=start_index), 15))
    assert resumed == uninterrupted[start_index:]
    assert [index for index, _ in resumed] == list(range(start_index, start_index + 15))


def test_iterate_over_dataset_source_matches_a_list(tmp_path: Path) -> None:
    # Crosses several read-ahead chunks and an epoch boundary of the batched-read path.
    source = countdown.load("train", data_dir=tmp_path, config=SMALL)
    as_list = _every_example(source)
    batched = list(itertools.islice(countdown.iterate(source, seed=0, start_index=450), 700))
    assert batched == list(itertools.islice(countdown.iterate(as_list, seed=0, start_index=450), 700))


def test_tensorflow_is_not_installed() -> None:
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed here; test_builds_and_reads_without_importing_tensorflow still runs")


def test_builds_and_reads_without_importing_tensorflow(tmp_path: Path) -> None:
    # A fresh interpreter, so modules other tests imported cannot hide or fake an import.
    script = textwrap.dedent(
        f"""
        import sys
        from r1jax.data import countdown

        config = countdown.CountdownConfig(train_size=50, test_size=10)
        source = countdown.load("train", data_dir={str(tmp_path)!r}, config=config)
        assert len(source) == 50 and source[0]["solution"]
        assert not any(name.split(".")[0] == "tensorflow" for name in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


NUMS, TARGET = [44, 19, 35], 98


def test_base_prompt_holds_the_problem_and_opens_thinking() -> None:
    prompt = prompts.base_prompt(NUMS, TARGET)
    assert prompt.startswith("A conversation between User and Assistant.")
    assert "[44, 19, 35]" in prompt and "equals 98" in prompt
    assert "<answer> (1 + 2) / 3 </answer>" in prompt
    assert prompt.endswith("\nAssistant: Let me solve this step by step.\n<think>")


def test_chat_template_prefills_an_open_assistant_turn() -> None:
    messages = prompts.chat_messages(NUMS, TARGET)
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert "[44, 19, 35]" in messages[1]["content"] and "98" in messages[1]["content"]
    assert messages[-1]["content"] == prompts.THINK_OPENING
    text = prompts.countdown_prompt(NUMS, TARGET, template="chat", renderer=ChatML())
    assert "[44, 19, 35]" in text and "equals 98" in text
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\nLet me solve this step by step.\n<think>")
    assert text.count("<|im_start|>assistant") == 1


class _ThinkingChatML(ChatML):
    """DeepSeek-R1's way: the generation prompt opens the thought itself."""

    def apply_chat_template(self, messages, *, add_generation_prompt=False, **extra_vars):
        text = super().apply_chat_template(messages, add_generation_prompt=add_generation_prompt, **extra_vars)
        return text + "<think>\n" if add_generation_prompt else text


def test_a_template_that_opens_the_thought_gets_no_second_opening() -> None:
    text = prompts.countdown_prompt(NUMS, TARGET, template="chat", renderer=_ThinkingChatML())
    assert text.endswith("<|im_start|>assistant\n<think>\nLet me solve this step by step.\n")
    assert text.split("<|im_start|>assistant")[-1].count("<think>") == 1


def test_prompt_template_errors() -> None:
    with pytest.raises(ValueError, match="renderer"):
        prompts.countdown_prompt(NUMS, TARGET, template="chat")
    with pytest.raises(ValueError, match="unknown template"):
        prompts.countdown_prompt(NUMS, TARGET, template="instruct")  # type: ignore[arg-type]
