"""Reward composition: config parsing, argument routing, weighted sums, None propagation, workers."""
import math

import numpy as np
import pytest

from r1jax.rewards import REGISTRY, RewardSet, RewardSpec, register, resolve

PREFILL = "<think>\n"
GOOD_MATH = "work\n</think>\n<answer>\n\\boxed{4}\n</answer>"
WRONG_MATH = "work\n</think>\n<answer>\n5\n</answer>"
GOOD_COUNTDOWN = "add\n</think>\n<answer>\n(3 + 5) * 2\n</answer>"

MATH_CONFIG = [
    {"name": "math", "weight": 1.0},
    {"name": "format_strict", "weight": 0.5, "kwargs": {"prefill": PREFILL}},
]


def test_scores_each_reward_and_the_weighted_sum() -> None:
    rewards = RewardSet(MATH_CONFIG)
    scores = rewards.score_batch([GOOD_MATH, WRONG_MATH, "rambling"], [{"answer": "4"}] * 3)
    assert rewards.keys == ["math", "format_strict"]
    assert scores.per_reward == {"math": [1.0, 0.0, 0.0], "format_strict": [1.0, 1.0, 0.0]}
    assert scores.total == [1.5, 0.5, 0.0]


def test_mixed_tasks_in_one_batch() -> None:
    """Each example carries its own fields; a reward gets only the parameters it declares."""
    rewards = RewardSet([{"name": "countdown"}])
    examples = [{"nums": [3, 5, 2], "target": 16, "source": "countdown"}, {"nums": [1, 2], "target": 3}]
    scores = rewards.score_batch([GOOD_COUNTDOWN, "<answer>1+2</answer>"], examples)
    assert scores.total == [1.0, 1.0]


def test_none_propagates_through_weighted_entries_only() -> None:
    rewards = RewardSet(MATH_CONFIG)
    scores = rewards.score_batch([GOOD_MATH], [{"answer": "\\overline{AB}"}])
    assert scores.per_reward["math"] == [None]
    assert scores.total == [None]
    logged_only = RewardSet([{"name": "math", "weight": 0.0}, {"name": "format_tags"}])
    scores = logged_only.score_batch([GOOD_MATH], [{"answer": "\\overline{AB}"}])
    assert scores.per_reward["math"] == [None]
    assert scores.total == [0.75]  # prefill not set, so three of four tags


def test_inputs_rename_fields_and_read_earlier_scores() -> None:
    config = [
        {"name": "math", "weight": 0.0, "inputs": {"answer": "solution"}},
        {"name": "cosine_length", "kwargs": {"max_length": 100}, "inputs": {"accuracy": "math"}},
        {"name": "overlong_penalty", "kwargs": {"max_length": 100, "cache_length": 20}},
    ]
    rewards = RewardSet(config)
    scores = rewards.score_batch([GOOD_MATH, WRONG_MATH], [{"solution": "4"}] * 2, lengths=[0, 90])
    assert scores.per_reward["cosine_length"] == pytest.approx([1.0, -0.5 - 0.25 * (1 + math.cos(0.9 * math.pi))])
    assert scores.per_reward["overlong_penalty"] == pytest.approx([0.0, -0.5])
    assert scores.total == pytest.approx([1.0, scores.per_reward["cosine_length"][1] - 0.5])


def test_repeated_reward_needs_distinct_keys() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        RewardSet([{"name": "format_tags"}, {"name": "format_tags"}])
    rewards = RewardSet(
        [{"name": "format_tags"}, {"name": "format_tags", "key": "tags_prefilled", "kwargs": {"prefill": "<think>"}}]
    )
    assert rewards.score_batch(["x</think>"], [{}]).per_reward == {"format_tags": [0.25], "tags_prefilled": [0.5]}


def test_config_errors() -> None:
    with pytest.raises(KeyError, match="unknown reward"):
        RewardSet([{"name": "no_such_reward"}])
    with pytest.raises(ValueError, match="unknown reward config keys"):
        RewardSet([{"name": "math", "wieght": 2}])
    with pytest.raises(ValueError, match="^the str 'math' is not a reward entry; give a dict such as"):
        RewardSet(["math"])  # what `--config.rewards=math` gives
    with pytest.raises(TypeError, match="no parameters"):
        RewardSet([{"name": "math", "kwargs": {"tolerance": 1}}])
    with pytest.raises(KeyError, match="needs 'answer'"):
        RewardSet([{"name": "math"}]).score_batch(["x"], [{"question": "q"}])
    overlong = {"name": "overlong_penalty", "kwargs": {"max_length": 10, "cache_length": 2}}
    with pytest.raises(KeyError, match="needs 'length'"):
        RewardSet([overlong]).score_batch(["x"], [{}])
    with pytest.raises(ValueError, match="clash"):
        RewardSet([{"name": "format_tags"}]).score_batch(["x"], [{"format_tags": 1}])
    with pytest.raises(ValueError, match="same length"):
        RewardSet(MATH_CONFIG).score_batch(["x", "y"], [{"answer": "1"}])


def test_spec_objects_and_module_paths() -> None:
    spec = RewardSpec(name="r1jax.rewards.length:repetition_penalty", weight=-1.0, key="repetition")
    scores = RewardSet([spec]).score_batch(["a b c a b c"], [{}])
    assert scores.total == pytest.approx([0.25])
    assert resolve("math") is REGISTRY["math"]
    with pytest.raises(ModuleNotFoundError):
        resolve("r1jax.rewards.not_a_module:score")


def test_register() -> None:
    def shouting(completion: str, *, bonus: float = 1.0) -> float:
        return bonus if completion.isupper() else 0.0

    register("test_shouting", shouting)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register("test_shouting", shouting)
        scores = RewardSet([{"name": "test_shouting", "kwargs": {"bonus": 2.0}}]).score_batch(["HI", "hi"], [{}, {}])
        assert scores.total == [2.0, 0.0]
    finally:
        del REGISTRY["test_shouting"]


def test_as_arrays_marks_none_as_nan() -> None:
    scores = RewardSet(MATH_CONFIG).score_batch([GOOD_MATH, GOOD_MATH], [{"answer": "4"}, {"answer": ""}])
    per_reward, total = scores.as_arrays()
    np.testing.assert_array_equal(per_reward["math"], [1.0, np.nan])
    np.testing.assert_array_equal(total, [1.5, np.nan])
    assert total.dtype == np.float64


def test_workers_match_serial_scoring() -> None:
    countdown = {"name": "countdown", "weight": 0.0, "inputs": {"target": "answer"}, "kwargs": {"format_score": 0.0}}
    config = [*MATH_CONFIG, countdown]
    completions = [GOOD_MATH, WRONG_MATH, GOOD_COUNTDOWN, "", "<answer>4</answer>"] * 5
    examples = [{"answer": "4", "nums": [4]}] * len(completions)
    serial = RewardSet(config).score_batch(completions, examples)
    with RewardSet(config, num_workers=2) as rewards:
        parallel = rewards.score_batch(completions, examples)
    assert parallel == serial
