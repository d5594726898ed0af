"""Reward composition: a config of named, weighted reward functions scored over a batch.

A config is a list of entries such as

    [{"name": "math", "weight": 1.0},
     {"name": "format_strict", "weight": 0.2, "kwargs": {"prefill": "<think>\\n"}},
     {"name": "cosine_length", "weight": 0.0, "kwargs": {"max_length": 4096},
      "inputs": {"accuracy": "math"}}]

Every reward is a plain function. It is called with keyword arguments only: `completion` if it has
that parameter, the entry's `kwargs`, and for its remaining parameters values looked up by name in
the completion's namespace, which holds
  * the example's fields (e.g. `nums`/`target` for countdown, `answer` for math),
  * `length`, the completion's length, when the trainer passes `lengths`,
  * the scores of the entries listed before it, under their keys.
`inputs` renames a lookup ({parameter: name in the namespace}), e.g. to feed the math score to
`cosine_length` as `accuracy` or to read a dataset column called `solution` as `answer`.

`score_batch` returns every entry's score per completion (so each can be logged) and the weighted
sum. A None score (an example a reward cannot judge, such as an unreadable gold answer) makes the
sum None when the entry's weight is nonzero; zero-weight entries are only logged.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib
import inspect
import multiprocessing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from r1jax.rewards import code, countdown, format, language, length, math

RewardFn = Callable[..., float | None]

REGISTRY: dict[str, RewardFn] = {
    "countdown": countdown.score,
    "math": math.score,
    "format_strict": format.strict,
    "format_tags": format.tag_count,
    "language_consistency": language.consistency,
    "overlong_penalty": length.overlong_penalty,
    "cosine_length": length.cosine_scaled,
    "repetition_penalty": length.repetition_penalty,
    "code": code.run_tests,
}


def register(name: str, fn: RewardFn) -> None:
    """Add a reward under `name`. Worker processes only see rewards registered at import time."""
    if name in REGISTRY:
        raise ValueError(f"reward {name!r} is already registered")
    REGISTRY[name] = fn


def resolve(name: str) -> RewardFn:
    """The reward registered as `name`, or the function a "package.module:function" name points to.

    The second form imports lazily, so optional rewards (e.g. sandboxed code execution) cost nothing
    until a config uses them.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        return getattr(importlib.import_module(module_name), attribute)
    raise KeyError(f"unknown reward {name!r}; registered: {sorted(REGISTRY)}")


@dataclasses.dataclass(frozen=True)
class RewardSpec:
    """One config entry: which reward, its weight, fixed kwargs, log key and input renames."""

    name: str
    weight: float = 1.0
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    key: str = ""  # the name scores are logged and referenced under; defaults to `name`
    inputs: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def log_key(self) -> str:
        return self.key or self.name

    @classmethod
    def from_config(cls, entry: RewardSpec | Mapping[str, Any]) -> RewardSpec:
        if isinstance(entry, RewardSpec):
            return entry
        if not isinstance(entry, Mapping):  # e.g. a bare name from the command line
            raise ValueError(f"the {type(entry).__name__} {entry!r} is not a reward entry; give a dict such as "
                             "{'name': 'countdown', 'weight': 1.0}")
        unknown = set(entry) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown reward config keys {sorted(unknown)} in {dict(entry)}")
        return cls(**entry)


class BoundReward:
    """A resolved reward with its fixed kwargs, and the namespace names its other parameters read."""

    def __init__(self, spec: RewardSpec) -> None:
        self.key = spec.log_key
        try:
            self.weight = float(spec.weight)
        except (TypeError, ValueError):
            raise ValueError(f"reward {self.key!r}: weight {spec.weight!r} is not a number") from None
        self.fn = resolve(spec.name)
        self.kwargs = dict(spec.kwargs)
        parameters = inspect.signature(self.fn).parameters
        self.takes_completion = "completion" in parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            unknown = (set(self.kwargs) | set(spec.inputs)) - set(parameters)
            if unknown:
                raise TypeError(f"reward {self.key!r}: {spec.name} has no parameters {sorted(unknown)}")
        # parameter -> (namespace name, required?)
        self.lookups: dict[str, tuple[str, bool]] = {
            parameter: (spec.inputs.get(parameter, parameter), info.default is inspect.Parameter.empty)
            for parameter, info in parameters.items()
            if parameter != "completion"
            and parameter not in self.kwargs
            and info.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }

    def __call__(self, completion: str, namespace: Mapping[str, Any]) -> float | None:
        arguments = dict(self.kwargs)
        for parameter, (source, required) in self.lookups.items():
            if source in namespace:
                arguments[parameter] = namespace[source]
            elif required:
                raise KeyError(f"reward {self.key!r} needs {source!r}; the example has {sorted(namespace)}")
        if self.takes_completion:
            arguments["completion"] = completion
        return self.fn(**arguments)


@dataclasses.dataclass
class BatchScores:
    """Scores of a batch: per reward key one score per completion, and their weighted sum."""

    per_reward: dict[str, list[float | None]]
    total: list[float | None]

    def as_arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """float64 arrays with NaN where a score is None (mask with `np.isnan`)."""
        def to_array(scores: list[float | None]) -> np.ndarray:
            return np.array([np.nan if s is None else s for s in scores], dtype=np.float64)

        return {key: to_array(scores) for key, scores in self.per_reward.items()}, to_array(self.total)


def _score_completions(
    rewards: Sequence[BoundReward],
    completions: Sequence[str],
    examples: Sequence[Mapping[str, Any]],
    lengths: Sequence[int] | None,
) -> list[dict[str, float | None]]:
    """Score each completion with every reward, in config order (module level so workers can run it)."""
    keys = {reward.key for reward in rewards}
    results = []
    for index, (completion, example) in enumerate(zip(completions, examples, strict=True)):
        namespace = dict(example)
        if lengths is not None:
            if "length" in namespace:
                raise ValueError("the example has a field 'length' and `lengths` was passed too")
            namespace["length"] = lengths[index]
        clashes = keys & namespace.keys()
        if clashes:
            raise ValueError(f"example fields {sorted(clashes)} clash with reward keys; set `key` in the config")
        scores: dict[str, float | None] = {}
        for reward in rewards:
            scores[reward.key] = namespace[reward.key] = reward(completion, namespace)
        results.append(scores)
    return results


class RewardSet:
    """The rewards of a config, ready to score batches.

    `num_workers > 0` scores in that many spawned worker processes (spawn, not fork: forking a
    process that runs JAX threads is unsafe). Rewards must then be importable module-level functions.
    Use as a context manager, or call `close()`, to stop the workers.
    """

    def __init__(self, config: Sequence[RewardSpec | Mapping[str, Any]], *, num_workers: int = 0) -> None:
        specs = [RewardSpec.from_config(entry) for entry in config]
        keys = [spec.log_key for spec in specs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate reward keys {keys}; give repeated rewards distinct `key`s")
        self.rewards = [BoundReward(spec) for spec in specs]
        self.num_workers = num_workers
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    @property
    def keys(self) -> list[str]:
        return [reward.key for reward in self.rewards]

    def score_batch(
        self,
        completions: Sequence[str],
        examples: Sequence[Mapping[str, Any]],
        lengths: Sequence[int] | None = None,
    ) -> BatchScores:
        """Score `completions[i]` against `examples[i]` (repeat a prompt's example for each of its samples).

        `lengths[i]`, if given, is the length of completion i (normally generated tokens) and is
        visible to rewards as `length`.
        """
        if len(completions) != len(examples) or (lengths is not None and len(lengths) != len(completions)):
            raise ValueError("completions, examples and lengths must have the same length")
        if self.num_workers > 0 and len(completions) > 1:
            rows = self._score_in_workers(completions, examples, lengths)
        else:
            rows = _score_completions(self.rewards, completions, examples, lengths)
        per_reward = {reward.key: [row[reward.key] for row in rows] for reward in self.rewards}
        return BatchScores(per_reward=per_reward, total=[self._weighted_sum(row) for row in rows])

    def _weighted_sum(self, row: Mapping[str, float | None]) -> float | None:
        total = 0.0
        for reward in self.rewards:
            if reward.weight == 0:
                continue
            score = row[reward.key]
            if score is None:
                return None
            total += reward.weight * score
        return total

    def _score_in_workers(
        self,
        completions: Sequence[str],
        examples: Sequence[Mapping[str, Any]],
        lengths: Sequence[int] | None,
    ) -> list[dict[str, float | None]]:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.num_workers, mp_context=multiprocessing.get_context("spawn")
            )
        # A few chunks per worker balance uneven costs without paying per-completion IPC.
        chunk = -(-len(completions) // (4 * self.num_workers))
        starts = range(0, len(completions), chunk)
        futures = [
            self._pool.submit(
                _score_completions,
                self.rewards,
                list(completions[start : start + chunk]),
                list(examples[start : start + chunk]),
                None if lengths is None else list(lengths[start : start + chunk]),
            )
            for start in starts
        ]
        return [row for future in futures for row in future.result()]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def __enter__(self) -> RewardSet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
