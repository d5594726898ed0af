"""Tasks for RL and evaluation: where examples come from and how an example becomes a prompt.

A task pairs a dataset (train and test splits with random access) with a prompt renderer. The
trainer only sees `train_examples` (an endless, resumable shuffled stream), `test_examples` and
`prompt_tokens`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import ml_collections
import tensorflow_datasets as tfds

from r1jax.data import countdown, prompts

TASKS = ("countdown",)


@dataclasses.dataclass
class Task:
    train: countdown.RandomAccessSource
    test: countdown.RandomAccessSource
    render_prompt: Callable[[Mapping[str, Any]], str]
    encode: Callable[[str], list[int]]

    def prompt_tokens(self, example: Mapping[str, Any]) -> list[int]:
        return self.encode(self.render_prompt(example))

    def train_examples(self, *, seed: int, start_index: int) -> Iterator[tuple[int, Mapping[str, Any]]]:
        """(position, example) pairs; resume a stream by passing the last position + 1."""
        return countdown.iterate(self.train, seed=seed, start_index=start_index)

    def test_examples(self, limit: int) -> list[Mapping[str, Any]]:
        return [self.test[i] for i in range(min(limit, len(self.test)))]


def load_task(config: ml_collections.ConfigDict, tokenizer, workdir: str) -> Task:
    """The task of a run config's `data` section; datasets are built under `data.data_dir` on first use."""
    if config.name not in TASKS:
        raise ValueError(f"data.name {config.name!r} is not one of {TASKS}")
    data_dir = config.data_dir or os.path.join(workdir, "data")
    tfds.disable_progress_bar()  # the run's own progress output is what matters
    builder_config = countdown.CountdownConfig(**dict(config.countdown))
    train = countdown.load("train", data_dir=data_dir, config=builder_config)
    test = countdown.load("test", data_dir=data_dir, config=builder_config)

    def render(example: Mapping[str, Any]) -> str:
        return prompts.countdown_prompt(example["nums"], example["target"], template=config.template,
                                        renderer=tokenizer)

    return Task(train, test, render, tokenizer.encode)
