"""Countdown reward: TinyZero semantics, golden table including reward-hacking attempts."""
from fractions import Fraction

import pytest

from r1jax.rewards import countdown

NUMS = [3, 5, 2]
TARGET = 16

# (completion, expected score) for nums [3, 5, 2], target 16, default scores 0.1 / 1.0.
GOLDEN = [
    pytest.param("<answer>(3 + 5) * 2</answer>", 1.0, id="correct"),
    pytest.param("<think>\nadd then double\n</think>\n<answer>\n(3+5)*2\n</answer>", 1.0, id="strict-layout"),
    pytest.param("<answer>2 * (5 + 3)</answer>", 1.0, id="reordered"),
    pytest.param("I think (3 + 5) * 2 works.", 0.0, id="no-answer"),
    pytest.param("<think>(3 + 5) * 2</think> answer: (3 + 5) * 2", 0.0, id="answer-outside-tags"),
    pytest.param("<answer>(3 + 5) * 2", 0.0, id="unclosed-tag"),
    pytest.param("<answer></answer>", 0.0, id="empty-answer"),
    pytest.param("<answer>(3 + 5) + 2</answer>", 0.1, id="wrong-value"),
    pytest.param("<answer>(3 + 5) * 2 or 3 * 5 + 2</answer>", 0.1, id="A-or-B"),
    pytest.param("<answer>(3 + 5) * 2, 3 * 5 + 2</answer>", 0.1, id="list-of-answers"),
    pytest.param("<answer>(3 + 5) * 2</answer> then <answer>3 + 5 + 2</answer>", 0.1, id="several-last-wrong"),
    pytest.param("<answer>3 + 5 + 2</answer> then <answer>(3 + 5) * 2</answer>", 1.0, id="several-last-right"),
    pytest.param("<answer><answer>(3 + 5) * 2</answer>", 1.0, id="stray-opening-tag"),
    pytest.param("<answer>(3 + 5) * 2 * 1</answer>", 0.1, id="extra-number"),
    pytest.param("<answer>(3 + 5) * 2 + 3 - 3</answer>", 0.1, id="number-reused"),
    pytest.param("<answer>8 * 2</answer>", 0.1, id="number-missing"),
    pytest.param("<answer>(３ + 5) * 2</answer>", 0.1, id="fullwidth-digit"),
    pytest.param("<answer>(3 + 5) * ٢</answer>", 0.1, id="arabic-indic-digit"),
    pytest.param("<answer>(3 + 5) * 2 = 16</answer>", 0.1, id="equals-sign"),
    pytest.param("<answer>(3 + 5) * 2.0</answer>", 0.1, id="decimal-point"),
    pytest.param("<answer>(3 +\t5) * 2</answer>", 1.0, id="tab-inside"),
    pytest.param("<answer>(3 + 5)2</answer>", 0.1, id="implicit-multiplication"),
    pytest.param("<answer>2(3 + 5)</answer>", 0.1, id="implicit-multiplication-before-paren"),
    pytest.param("<answer>3 5 2</answer>", 0.1, id="juxtaposed-numbers"),
    pytest.param("<answer>(3 + 5) // 2</answer>", 0.1, id="floor-division"),
    pytest.param("<answer>((3 + 5) * 2</answer>", 0.1, id="unbalanced"),
    pytest.param("<answer>abs(3 + 5) * 2</answer>", 0.1, id="function-call"),
    pytest.param("<answer>__import__('os')</answer>", 0.1, id="code-injection"),
]


@pytest.mark.parametrize("completion, expected", GOLDEN)
def test_golden(completion: str, expected: float) -> None:
    assert countdown.score(completion, NUMS, TARGET) == expected


@pytest.mark.parametrize(
    "completion, nums, target, expected",
    [
        pytest.param("<answer>2**3</answer>", [2, 3], 8, 0.1, id="power-hits-target"),
        pytest.param("<answer>2 ** 3</answer>", [2, 3], 8, 0.1, id="power-with-spaces"),
        pytest.param("<answer>6 / (1 - 3 / 4)</answer>", [1, 3, 4, 6], 24, 1.0, id="exact-fractions"),
        pytest.param("<answer>5 / (2 - 2)</answer>", [2, 2, 5], 5, 0.1, id="division-by-zero"),
        pytest.param("<answer>-3 + 5</answer>", [3, 5], 2, 1.0, id="unary-minus-as-in-eval"),
        pytest.param("<answer>100 - 1</answer>", [100, 1], 99, 1.0, id="multi-digit"),
        pytest.param("<answer>10 - 1</answer>", [1, 0, 1], 9, 0.1, id="digits-are-not-numbers"),
        pytest.param("<answer>" + "(" * 10_000 + "3+5" + ")" * 10_000 + "</answer>", [3, 5], 8, 0.1, id="deep-nesting"),
        pytest.param("<answer>9999999999*99999999</answer>", [9999999999, 99999999], 1, 0.1, id="big-product-misses"),
        pytest.param("<answer>2 * 3\n+\t4</answer>", [2, 3, 4], 10, 1.0, id="any-whitespace-separates"),
        pytest.param("<answer>7 + 1 / (50 * 50 * 50)</answer>", [7, 1, 50, 50, 50], 7, 0.1, id="near-miss-is-a-miss"),
    ],
)
def test_edge_cases(completion: str, nums: list[int], target: int, expected: float) -> None:
    assert countdown.score(completion, nums, target) == expected


def test_custom_scores() -> None:
    assert countdown.score("<answer>(3+5)*2</answer>", NUMS, TARGET, correct_score=2.0) == 2.0
    assert countdown.score("<answer>3+5+2</answer>", NUMS, TARGET, format_score=0.0) == 0.0
    assert countdown.score("no answer", NUMS, TARGET, format_score=0.5) == 0.0


def test_numpy_fields() -> None:
    np = pytest.importorskip("numpy")
    assert countdown.score("<answer>(3+5)*2</answer>", np.array(NUMS), np.int64(TARGET)) == 1.0


def test_extract_equation() -> None:
    assert countdown.extract_equation("x <answer> 1+2 </answer> y <answer>\n3*4\n</answer>") == "3*4"
    assert countdown.extract_equation("<answer>1+2") is None
    assert countdown.extract_equation("") is None


def test_evaluate_equation() -> None:
    assert countdown.evaluate_equation("6 / 4") == Fraction(3, 2)
    assert countdown.evaluate_equation("-(2 - 5) * 2") == 6
    for invalid in ["", " ", "1 +", "(1", "1)", "1 / 0", "2**3", "1.5", "x", "1" * 600, "(" * 40 + "1" + ")" * 40]:
        assert countdown.evaluate_equation(invalid) is None, invalid


def test_uses_each_number_once() -> None:
    assert countdown.uses_each_number_once("(3 + 5) * 2", [2, 3, 5])
    assert not countdown.uses_each_number_once("(3 + 5) * 2", [2, 3, 5, 5])
    assert not countdown.uses_each_number_once("35 * 2", [2, 3, 5])
    assert not countdown.uses_each_number_once("9" * 100_000, [9])  # no int() blow-up on huge literals
