"""Countdown problems (TinyZero's task) as a TFDS dataset generated locally, read with random access.

A problem is a few positive integers `nums` and a `target`: combine every number exactly once with
`+ - * /` and parentheses to reach the target. Each example also carries a reference `solution`.

Generation builds a random expression tree over the drawn numbers (the Countdown game's rules:
every intermediate value is a positive integer, so divisions are exact and subtractions never go
negative) and keeps the problem if its value lands in the target range; so every target is
reachable by construction. The test split is drawn first and train skips any problem (numbers as
a multiset, plus target) already taken, so the splits are disjoint and the test split does not
change when `train_size` does. Randomness comes only from `random.Random.random()`, whose sequence
Python fixes for a given seed, so a seed gives the same data on any machine and Python version.

Storage is ArrayRecord, read back through `tfds` data sources: no TensorFlow needed to build or read.

    source = load("train", data_dir="/data/tfds")          # builds on first use (seconds)
    for index, example in iterate(source, seed=0, start_index=resume_from):
        ...  # checkpoint `index + 1` to resume exactly after this example
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypedDict, TypeVar

import numpy as np
from etils import epath
import tensorflow_datasets as tfds

from r1jax.rewards.countdown import evaluate_equation, uses_each_number_once

_T_co = TypeVar("_T_co", covariant=True)


class CountdownExample(TypedDict):
    nums: list[int]
    target: int
    solution: str


class RandomAccessSource(Protocol[_T_co]):
    """What `iterate` needs: a length and integer indexing (TFDS data sources, lists, ...)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> _T_co: ...


@dataclasses.dataclass(eq=False, kw_only=True)
class CountdownConfig(tfds.core.BuilderConfig):
    """Generation knobs; all ranges are inclusive.

    Leave `name` empty to have it spell out every knob: the name is the directory the data is
    cached in, so two different configs can never read each other's files.
    """

    name: str = ""
    min_count: int = 3
    max_count: int = 4
    min_number: int = 1
    max_number: int = 99
    min_target: int = 1
    max_target: int = 100
    train_size: int = 32768
    test_size: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.min_count <= self.max_count:
            raise ValueError(f"need 2 <= min_count <= max_count, got {self.min_count}, {self.max_count}")
        # Positive numbers keep every intermediate value positive, as the game requires.
        if not 1 <= self.min_number <= self.max_number:
            raise ValueError(f"need 1 <= min_number <= max_number, got {self.min_number}, {self.max_number}")
        if not 1 <= self.min_target <= self.max_target:
            raise ValueError(f"need 1 <= min_target <= max_target, got {self.min_target}, {self.max_target}")
        if self.train_size < 1 or self.test_size < 1:
            raise ValueError(f"split sizes must be positive, got train {self.train_size}, test {self.test_size}")
        if not self.name:
            self.name = (
                f"n{self.min_count}to{self.max_count}_v{self.min_number}to{self.max_number}"
                f"_t{self.min_target}to{self.max_target}_train{self.train_size}_test{self.test_size}_seed{self.seed}"
            )
        if not self.description:
            self.description = (
                f"{self.min_count}-{self.max_count} numbers in [{self.min_number}, {self.max_number}], "
                f"target in [{self.min_target}, {self.max_target}], seed {self.seed}"
            )


DEFAULT_CONFIG = CountdownConfig()


class Countdown(tfds.core.GeneratorBasedBuilder):
    """Countdown problems with reference solutions; splits 'train' and 'test'."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [DEFAULT_CONFIG]
    builder_config: CountdownConfig

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        # TFDS's own lookup touches `importlib_resources`, which it declares only for Python < 3.9,
        # so for a builder inside a package it raises ModuleNotFoundError on newer Pythons.
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        # DatasetInfo directly rather than dataset_info_from_configs(), which reads README/citation
        # files from the package directory that this module does not have.
        return tfds.core.DatasetInfo(
            builder=self,
            description="Countdown problems (TinyZero's task) with reference solutions, generated locally.",
            features=tfds.features.FeaturesDict(
                {
                    "nums": tfds.features.Tensor(shape=(None,), dtype=np.int32),
                    "target": tfds.features.Scalar(dtype=np.int32),
                    "solution": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
        )

    def _split_generators(
        self, dl_manager: tfds.download.DownloadManager
    ) -> dict[str, Iterator[tuple[int, CountdownExample]]]:
        del dl_manager  # nothing to download
        test, train = generate_splits(self.builder_config)
        return {"train": self._generate_examples(train), "test": self._generate_examples(test)}

    def _generate_examples(self, examples: list[CountdownExample]) -> Iterator[tuple[int, CountdownExample]]:
        yield from enumerate(examples)


def build(config: CountdownConfig = DEFAULT_CONFIG, *, data_dir: str | os.PathLike[str]) -> Countdown:
    """The prepared builder for `config` under `data_dir`, generating the data on first use."""
    # The class, not tfds.builder("countdown"): a name lookup that misses falls through to the
    # community-dataset index on GCS, which needs TensorFlow and network.
    builder = Countdown(config=config, data_dir=os.fspath(data_dir), file_format="array_record")
    # TFDS prints download sizes ("Unknown size") for a dataset generated locally: noise in a run's log.
    with contextlib.redirect_stdout(io.StringIO()):
        builder.download_and_prepare()
    return builder


class _WithoutCustomConfigNotice(logging.Filter):
    """Drops TFDS's warning that a builder config is not predefined: every Countdown config is custom."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Using custom data configuration")


logging.getLogger("absl").addFilter(_WithoutCustomConfigNotice())


class DecodedSource(Generic[_T_co]):
    """Random access to one split through `decode`: TFDS without TensorFlow yields bytes and NumPy values."""

    def __init__(self, records: RandomAccessSource[dict[str, Any]], decode: Callable[[dict[str, Any]], _T_co]) -> None:
        self._records = records
        self._decode = decode

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> _T_co:
        return self._decode(self._records[index])

    def __getitems__(self, indices: Sequence[int]) -> list[_T_co]:
        """Batched read: several times faster per example than indexing one at a time."""
        return [self._decode(record) for record in self._records.__getitems__(list(indices))]


def _to_example(record: dict[str, Any]) -> CountdownExample:
    return CountdownExample(
        nums=[int(n) for n in record["nums"]],
        target=int(record["target"]),
        solution=record["solution"].decode("utf-8"),
    )


def load(
    split: str, *, data_dir: str | os.PathLike[str], config: CountdownConfig = DEFAULT_CONFIG
) -> DecodedSource[CountdownExample]:
    """Random-access examples of `split` ('train', 'test', or TFDS slicing such as 'train[:1%]')."""
    return DecodedSource(build(config, data_dir=data_dir).as_data_source(split), _to_example)


def iterate(
    source: RandomAccessSource[_T_co], *, seed: int, start_index: int = 0
) -> Iterator[tuple[int, _T_co]]:
    """Endless shuffled epochs over `source`, yielding (global index, example).

    The global index counts examples from the start of epoch 0; epoch `e` visits every example once
    in an order fixed by (`seed`, `e`). Passing a yielded index + 1 as `start_index` resumes exactly
    after that example. Reads go `_READ_AHEAD` examples at a time through `__getitems__` when the
    source has it.
    """
    size = len(source)
    if size == 0:
        raise ValueError("cannot iterate over an empty source")
    if start_index < 0:
        raise ValueError(f"start_index must be >= 0, got {start_index}")
    index = start_index
    while True:
        epoch, offset = divmod(index, size)
        order = epoch_order(size, seed=seed, epoch=epoch)
        for chunk_start in range(offset, size, _READ_AHEAD):
            for example in _read(source, order[chunk_start : chunk_start + _READ_AHEAD]):
                yield index, example
                index += 1


_READ_AHEAD = 256


def _read(source: RandomAccessSource[_T_co], indices: list[int]) -> list[_T_co]:
    read_many = getattr(source, "__getitems__", None)
    return read_many(indices) if read_many is not None else [source[i] for i in indices]


def epoch_order(size: int, *, seed: int, epoch: int) -> list[int]:
    """The permutation of range(size) that `iterate` visits in `epoch`."""
    order = list(range(size))
    draws = _Draws("epoch", seed, epoch)
    for last in range(size - 1, 0, -1):  # Fisher-Yates
        pick = draws.below(last + 1)
        order[last], order[pick] = order[pick], order[last]
    return order


def generate_splits(config: CountdownConfig) -> tuple[list[CountdownExample], list[CountdownExample]]:
    """(test, train) examples for `config`: distinct problems, test drawn first."""
    draws = _Draws("problems", config.seed)
    seen: set[tuple[tuple[int, ...], int]] = set()
    splits: list[list[CountdownExample]] = []
    # Generous for any config with room for this many distinct problems (the default config keeps
    # about one attempt in four); a config with too few fails instead of looping forever.
    attempts_left = 50 * (config.test_size + config.train_size) + 10_000
    for size in (config.test_size, config.train_size):
        examples: list[CountdownExample] = []
        while len(examples) < size:
            if attempts_left == 0:
                raise ValueError(f"could not draw enough distinct problems for {config.name}; widen its ranges")
            attempts_left -= 1
            example = _random_problem(draws, config)
            if example is None:
                continue
            key = (tuple(sorted(example["nums"])), example["target"])
            if key not in seen:
                seen.add(key)
                examples.append(example)
        splits.append(examples)
    test, train = splits
    return test, train


def is_solution(equation: str, nums: Sequence[int], target: int) -> bool:
    """Whether `equation` uses each of `nums` exactly once and equals `target` exactly."""
    return uses_each_number_once(equation, nums) and evaluate_equation(equation) == target


# An expression tree: a number, or (operator, left, right).
_Node = int | tuple[str, "_Node", "_Node"]

_APPLY = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a // b,  # only offered when exact
}


def _random_problem(draws: _Draws, config: CountdownConfig) -> CountdownExample | None:
    """One random problem, or None when its expression's value falls outside the target range."""
    count = draws.between(config.min_count, config.max_count)
    nums = [draws.between(config.min_number, config.max_number) for _ in range(count)]
    pool: list[tuple[int, _Node]] = [(n, n) for n in nums]  # (value, tree)
    # Merging random pairs until one expression is left yields every tree shape, as in the game.
    while len(pool) > 1:
        first = pool.pop(draws.below(len(pool)))
        second = pool.pop(draws.below(len(pool)))
        big, small = (first, second) if first[0] >= second[0] else (second, first)
        # Only merges that keep the value a positive integer.
        merges = [("+", first, second), ("*", first, second)]
        if big[0] > small[0]:
            merges.append(("-", big, small))
        if big[0] % small[0] == 0:
            merges.append(("/", big, small))
        op, (left_value, left), (right_value, right) = merges[draws.below(len(merges))]
        pool.append((_APPLY[op](left_value, right_value), (op, left, right)))
    target, tree = pool[0]
    if not config.min_target <= target <= config.max_target:
        return None
    solution = _render(tree)
    if not is_solution(solution, nums, target):
        raise AssertionError(f"generator bug: {solution!r} does not make {target} from {nums}")
    return CountdownExample(nums=nums, target=target, solution=solution)


def _render(tree: _Node, *, outermost: bool = True) -> str:
    """Infix text, with every compound operand parenthesised so no precedence rules are needed."""
    if isinstance(tree, int):
        return str(tree)
    op, left, right = tree
    text = f"{_render(left, outermost=False)} {op} {_render(right, outermost=False)}"
    return text if outermost else f"({text})"


class _Draws:
    """Random integers from `random.Random.random()` seeded by a string key.

    Python guarantees `random()`'s sequence for a given seed across versions and platforms (unlike
    `randrange`, `shuffle` or NumPy's generators), so the data depends on the seed alone.
    """

    def __init__(self, *key: str | int) -> None:
        self._random = random.Random(repr(key))

    def below(self, bound: int) -> int:
        """In [0, bound); off uniform by at most bound / 2**53, nothing at the sizes used here."""
        return int(self._random.random() * bound)

    def between(self, low: int, high: int) -> int:
        """In [low, high]."""
        return low + self.below(high - low + 1)
