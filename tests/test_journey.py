"""Journey-learning data: golden texts, every wrong attempt really wrong and caught, every answer correct, and
the two configs that train a journey and a shortcut student."""

import os
import random
import re
from fractions import Fraction

import pytest

from r1jax.config import load_config_file
from r1jax.data import countdown, journey, synthetic
from r1jax.data.char_tokenizer import EOS
from r1jax.rewards import countdown as countdown_reward

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = dict(nums=[12, 7, 3], target=16, solution="(12 + 7) - 3")
PROBLEMS = countdown.generate_splits(countdown.CountdownConfig(min_count=2, max_count=4, train_size=300,
                                                               test_size=1))[1]


def test_golden_journey_and_shortcut():
    rng = random.Random("journey-0")
    assert journey.completion(rng, EXAMPLE, variant="journey", min_wrong=1) == (
        "7*(12-3)=63, not 16. Try another. (12-7)*3=15, not 16. Try another. 12+7-3=16, equals 16."
        f"</think>\n<answer>12+7-3</answer>{EOS}")
    rng = random.Random("journey-0")
    assert journey.completion(rng, EXAMPLE, variant="journey", min_wrong=1, style="chain") == (
        "7*(12-3)=7*9=63, not 16. Try another. (12-7)*3=5*3=15, not 16. Try another. 12+7-3=19-3=16, equals 16."
        f"</think>\n<answer>12+7-3</answer>{EOS}")
    shortcut = journey.completion(rng, EXAMPLE, variant="shortcut")
    assert shortcut == f"12+7-3=16, equals 16.</think>\n<answer>12+7-3</answer>{EOS}"
    # Two numbers whose only result within 100 is the target: the wrong attempt goes past the bound.
    two = journey.corpus([dict(nums=[50, 84], target=34, solution="84 - 50")], variant="journey", min_wrong=1,
                         max_value=100)
    assert two[0] == dict(
        prompt="Numbers: 50 84. Target: 34.\n<think>", prompt_id=0, variant="journey",
        completion=f"50*84=4200, not 34. Try another. 84-50=34, equals 34.</think>\n<answer>84-50</answer>{EOS}")


def _steps(think):
    """(attempt text, checked number, hit?) of each step of a journey's thinking."""
    *wrong, right = think.split(" Try another. ")
    steps = [re.fullmatch(r"(.+), not (\d+)\.", text) for text in wrong]
    steps.append(re.fullmatch(r"(.+), equals (\d+)\.", right))
    assert all(steps), think
    return [(m[1], int(m[2]), i == len(steps) - 1) for i, m in enumerate(steps)]


@pytest.mark.parametrize("style,max_value", [("inline", 100), ("chain", 100), ("chain", None)])
def test_wrong_attempts_are_wrong_and_caught_and_every_answer_is_correct(style, max_value):
    kwargs = dict(seed=3, min_wrong=1, max_wrong=3, style=style, max_value=max_value)
    journeys = journey.corpus(PROBLEMS, variant="journey", **kwargs)
    shortcuts = journey.corpus(PROBLEMS, variant="shortcut", **kwargs)
    wrong_counts = []
    for record, shortcut in zip(journeys, shortcuts):
        example = PROBLEMS[record["prompt_id"]]
        nums, target = example["nums"], example["target"]
        assert record["completion"].endswith(shortcut["completion"])  # the same right path and answer
        for completion in (record["completion"], shortcut["completion"]):
            assert countdown_reward.score(completion, nums, target) == 1.0
        steps = _steps(record["completion"].split("</think>")[0])
        values = []
        for text, checked, hit in steps:
            expression, *chain = text.split("=")
            value = int(chain[-1])
            assert countdown_reward.uses_each_number_once(expression, nums)
            # Every written step of the attempt has the value written at its end: the arithmetic is right.
            assert all(countdown_reward.evaluate_equation(part) == Fraction(value) for part in [expression, *chain])
            assert checked == target and (value == target) == hit
            values.append(value)
        wrong = values[:-1]
        assert len(set(wrong)) == len(wrong)  # "Try another" always reaches a new value
        if max_value is not None and any(v > max_value for v in wrong):
            assert len(wrong) == 1  # the bound is left only to reach min_wrong
        wrong_counts.append(len(wrong))
    assert min(wrong_counts) == 1 and max(wrong_counts) == 3


def test_corpora_are_deterministic_in_the_seed():
    first = journey.corpus(PROBLEMS[:50], variant="journey", seed=0, traces_per_example=2)
    assert first == journey.corpus(PROBLEMS[:50], variant="journey", seed=0, traces_per_example=2)
    assert first != journey.corpus(PROBLEMS[:50], variant="journey", seed=1, traces_per_example=2)
    assert [r["prompt_id"] for r in first] == list(range(50)) * 2
    assert journey.corpus(PROBLEMS[:50], variant="shortcut", seed=0) == journey.corpus(PROBLEMS[:50],
                                                                                        variant="shortcut", seed=1)


def test_reference_solutions_parse_to_their_target():
    for example in PROBLEMS:
        tree = journey.parse_solution(example["solution"])
        assert synthetic.value_of(tree) == example["target"]
        assert countdown_reward.evaluate_equation(synthetic.render(tree)) == example["target"]
    for bad in ("(1 + 2", "1 +", "1 + 2)", "(1 + x)"):
        with pytest.raises(ValueError, match="solution"):
            journey.parse_solution(bad)
    with pytest.raises(ValueError, match="does not make"):
        journey.completion(random.Random(0), dict(EXAMPLE, target=17), variant="shortcut")
    with pytest.raises(ValueError, match="variant"):
        journey.completion(random.Random(0), EXAMPLE, variant="detour")


def test_the_two_students_differ_only_in_their_data():
    path = os.path.join(REPO, "configs", "sft_journey_tiny.py")
    configs = {variant: load_config_file(f"{path}:{variant}").to_dict() for variant in ("journey", "shortcut")}
    assert configs["journey"]["data"].pop("synthetic") == "journey"
    assert configs["shortcut"]["data"].pop("synthetic") == "shortcut"
    assert configs["journey"] == configs["shortcut"]
    assert load_config_file(path).data.synthetic == "journey"
    # The problems and attempt format are those the countdown_tiny base model was pretrained on.
    base = load_config_file(os.path.join(REPO, "configs", "countdown_tiny.py"))
    assert configs["journey"]["data"]["countdown"] == base.data.countdown.to_dict()
    assert configs["journey"]["data"]["journey"]["style"] == base.pretrain.style
    for variant in ("journey,shortcut", "detour", "smoke,fast"):
        with pytest.raises(ValueError, match="variant"):
            load_config_file(f"{path}:{variant}")


def test_stitch_keeps_the_wrong_reasoning_and_ends_in_the_right_completion():
    wrong = ["12*7-3=81</think>\n<answer>12*7-3</answer>", "<think>\n12-7+3=8</think>\n<answer>12-7+3</answer>"]
    right = "<think> 12+7-3=16</think>\n<answer>12+7-3</answer>"
    assert journey.stitch(wrong, right, transition=" Wait. ") == \
        "12*7-3=81 Wait. 12-7+3=8 Wait. 12+7-3=16</think>\n<answer>12+7-3</answer>"
    # Completions that open the thought themselves keep one opening tag; one without a closing tag
    # (a boxed answer) goes in whole.
    assert journey.stitch(["<think>a</think>x", "so \\boxed{3}"], "<think>b</think>y", transition="|") == \
        "<think>a|so \\boxed{3}|b</think>y"
    assert journey.stitch([], right, transition="|") == right
