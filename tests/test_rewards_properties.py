"""Property tests: no reward raises on random or adversarial input, each returns within 1 s, and
the exact arithmetic agrees with a reference evaluation."""
import time
from collections.abc import Callable
from datetime import timedelta
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r1jax.rewards import countdown, format, language, length
from r1jax.rewards import math as math_reward

TIME_LIMIT_S = 1.0
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=timedelta(seconds=TIME_LIMIT_S), suppress_health_check=[HealthCheck.too_slow]
)


def _in(*allowed: object) -> Callable[[object], bool]:
    return lambda score: score in allowed


def _between(low: float, high: float) -> Callable[[object], bool]:
    return lambda score: isinstance(score, float) and low <= score <= high


# name -> (reward on one text, check on its result). The text plays the completion, except for
# "math_gold", where it plays the gold answer.
REWARDS: dict[str, tuple[Callable[[str], object], Callable[[object], bool]]] = {
    "countdown": (lambda text: countdown.score(text, [3, 5, 2], 16), _in(0.0, 0.1, 1.0)),
    "math": (lambda text: math_reward.score(text, "\\frac{1}{2}"), _in(0.0, 1.0)),
    "math_gold": (lambda text: math_reward.score("\\boxed{1}", text), _in(None, 0.0, 1.0)),
    "format_strict": (format.strict, _in(0.0, 1.0)),
    "format_tags": (format.tag_count, _between(0.0, 1.0)),
    "language_en": (language.consistency, _between(0.0, 1.0)),
    "language_zh": (
        lambda text: language.consistency(text, language="zh", prefill="<think>"), _between(0.0, 1.0)
    ),
    "overlong": (
        lambda text: length.overlong_penalty(len(text), max_length=4096, cache_length=512), _between(-1.0, 0.0)
    ),
    "cosine": (lambda text: length.cosine_scaled(len(text), 1.0, max_length=4096), _between(-1.0, 1.0)),
    "repetition": (length.repetition_penalty, _between(-1.0, 0.0)),
}

TEN_MB = 10 * 1024 * 1024
ADVERSARIAL = {
    "10MB-letters": "x" * TEN_MB,
    "10MB-prose-in-tags": (
        "<think>" + "we try again and " * (TEN_MB // 17) + "</think><answer>" + "1+" * 1000 + "1</answer>"
    ),
    "10MB-han": "<think>" + "试" * (TEN_MB // 3),
    "10MB-open-boxes": "\\boxed{" * (TEN_MB // 7),
    "10MB-answer-markers": "the answer is " * (TEN_MB // 14),
    "10MB-dollars": "$" * TEN_MB,
    "10MB-tags": "<answer></think><think>" * (TEN_MB // 24),
    "nested-parens": "<answer>" + "(" * 10_000 + "3+5" + ")" * 10_000 + "</answer>",
    "nested-braces": "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_001,
    "nested-fracs": "\\boxed{" + "\\frac{1}{" * 5_000 + "2" + "}" * 5_001,
    "nested-unary-minus": "\\boxed{" + "-" * 900 + "1}",
    "nested-functions": "\\boxed{" + "\\sin" * 240 + "x}",
    "nested-roots": "\\boxed{" + "\\sqrt" * 190 + "2}",
    "exponent-chain": "\\boxed{" + "2^" * 450 + "2}",
    "10MB-spaces-after-boxed": "\\boxed" + " " * TEN_MB + "{1}",
    "python-power": "<answer>9999999999**99999999</answer>",
    "latex-power": "\\boxed{9999999999^{99999999}}",
    "power-tower": "\\boxed{10^{10^{10^{10}}}}",
    "bare-power-tower": "\\boxed{10^10^10^10}",
    "repeated-squaring": "\\boxed{((((2^{100})^{100})^{100})^{100})^{100}}",
    "product-blow-up": "\\boxed{" + "*".join(["9" * 40] * 20) + "^{999}}",
    "factorials": "\\boxed{1000!!}",
    "huge-factorial": "\\boxed{99999999999999999999!}",
    "huge-binomial": "\\boxed{\\binom{10^{9}}{5 \\cdot 10^{8}}}",
    "huge-root": "\\boxed{\\sqrt[10^{9}]{2}}",
    "exp-tower": "\\boxed{e^{e^{e^{e^{10}}}}}",
    "many-variables": "\\boxed{" + "+".join(f"x_{{{i}}}^{{999}}" for i in range(150)) + "}",
    "plus-minus-combinatorics": "\\boxed{" + " \\pm ".join("1" * 20) + "}",
    "long-number": "\\boxed{" + "9" * 990 + "}",
    "malformed-frac": "\\boxed{\\frac{1}{",
    "malformed-left": "\\boxed{\\left(}",
    "malformed-matrix": "\\boxed{\\begin{pmatrix}1&2\\\\}",
    "malformed-braces": "\\boxed{}}}{{{",
    "malformed-sqrt": "\\boxed{\\sqrt[}{]}",
    "malformed-scripts": "\\boxed{^^^___!!!%%%}",
    "malformed-backslashes": "\\boxed{\\\\\\\\\\}",
    "unknown-environment": "\\boxed{\\begin{array}{cc}1&2\\end{array}}",
    "unicode-digits": "<answer>(３ + ٥) * ２</answer> \\boxed{１２３}",
    "control-and-surrogates": "<think>\x00\ud800\u202e</think><answer>\x00</answer>",
    "empty": "",
}


@pytest.mark.parametrize("reward_name", sorted(REWARDS))
@pytest.mark.parametrize("input_name", sorted(ADVERSARIAL))
def test_adversarial_inputs(reward_name: str, input_name: str) -> None:
    reward, check = REWARDS[reward_name]
    start = time.perf_counter()
    score = reward(ADVERSARIAL[input_name])
    elapsed = time.perf_counter() - start
    assert check(score), score
    assert elapsed < TIME_LIMIT_S, f"{reward_name} took {elapsed:.2f}s on {input_name}"


@PROPERTY_SETTINGS
@given(st.text(max_size=2000))
def test_random_text_never_raises(text: str) -> None:
    for reward, check in REWARDS.values():
        assert check(reward(text))


LATEX_PIECES = [
    "\\frac", "\\dfrac", "\\sqrt", "\\boxed", "\\text", "\\left(", "\\right)", "\\{", "\\}", "\\pi", "\\infty",
    "\\cdot", "\\pm", "\\cup", "\\le", "\\begin{pmatrix}", "\\end{pmatrix}", "\\\\", "&", "{", "}", "(", ")", "[",
    "]", "^", "_", "!", "%", "\\%", "=", "<", ",", "+", "-", "*", "/", "x", "e", "i", "0", "1", "2", "10", "99",
    "1,000", ".5", " ", "$", "\\sin", "\\log", "\\binom",
]
latex_soup = st.lists(st.sampled_from(LATEX_PIECES), max_size=60).map("".join)


@PROPERTY_SETTINGS
@given(latex_soup, latex_soup)
def test_latex_soup_never_raises(prediction: str, gold: str) -> None:
    assert math_reward.equivalent(prediction, gold) in (None, False, True)
    assert math_reward.equivalent(gold, prediction) in (None, False, True)
    expected = (0.0,) if not prediction.strip() else (0.1, 1.0)
    assert countdown.score(f"<answer>{prediction}</answer>", [1, 2, 10], 12) in expected


@PROPERTY_SETTINGS
@given(latex_soup)
def test_a_readable_answer_equals_itself(answer: str) -> None:
    verdict = math_reward.equivalent(answer, answer)
    assert verdict is None or verdict is True


# Random arithmetic over small integers, with its exact value computed alongside the text.
leaf = st.integers(0, 99).map(lambda n: (str(n), Fraction(n), [n]))


def _combine(children: st.SearchStrategy) -> st.SearchStrategy:
    def build(left: tuple, op: str, right: tuple) -> tuple:
        (left_text, left_value, left_nums), (right_text, right_value, right_nums) = left, right
        if op == "/" and right_value == 0:
            op = "+"
        value = {"+": left_value + right_value, "-": left_value - right_value,
                 "*": left_value * right_value, "/": left_value / right_value if right_value else None}[op]
        return f"({left_text} {op} {right_text})", value, left_nums + right_nums

    return st.builds(build, children, st.sampled_from("+-*/"), children)


expressions = st.recursive(leaf, _combine, max_leaves=6)


@PROPERTY_SETTINGS
@given(expressions)
def test_countdown_matches_exact_reference(expression: tuple) -> None:
    text, value, nums = expression
    assert countdown.evaluate_equation(text) == value
    if value.denominator == 1:
        assert countdown.score(f"<answer>{text}</answer>", nums, value.numerator) == 1.0
        assert countdown.score(f"<answer>{text}</answer>", nums, value.numerator + 1) == 0.1


def _spellings(value: Fraction) -> list[str]:
    sign = "-" if value < 0 else ""
    numerator, denominator = abs(value.numerator), value.denominator
    spellings = [
        f"{sign}\\frac{{{numerator}}}{{{denominator}}}",
        f"{sign}{numerator}/{denominator}",
        f"\\dfrac{{{value.numerator}}}{{{denominator}}}",
        f"{sign}\\frac{{{2 * numerator}}}{{{2 * denominator}}}",
    ]
    if denominator == 1:
        spellings += [f"{value.numerator}", f"{value.numerator}.0", f"{value.numerator:,}"]
    if 10**6 % denominator == 0:  # terminating decimal
        spellings.append(f"{float(value):.6f}")
    return spellings


fractions = st.fractions(min_value=-10**6, max_value=10**6, max_denominator=1000)


@PROPERTY_SETTINGS
@given(fractions, fractions, st.data())
def test_rational_spellings(gold: Fraction, other: Fraction, data: st.DataObject) -> None:
    gold_text = data.draw(st.sampled_from(_spellings(gold)))
    assert math_reward.equivalent(data.draw(st.sampled_from(_spellings(gold))), gold_text) is True
    assert math_reward.equivalent(data.draw(st.sampled_from(_spellings(other))), gold_text) is (other == gold)


@PROPERTY_SETTINGS
@given(st.integers(-20, 20), st.integers(-20, 20), st.integers(-20, 20))
def test_polynomial_identities(a: int, b: int, c: int) -> None:
    factored = f"(x + {a})(x + {b})"
    expanded = f"x^2 + {a + b}x + {a * b}"
    assert math_reward.equivalent(factored, expanded) is True
    assert math_reward.equivalent(f"x^2 + {a + b}x + {a * b + c}", factored) is (c == 0)


@PROPERTY_SETTINGS
@given(st.integers(0, 10_000), st.integers(1, 4096), st.integers(1, 4096))
def test_overlong_penalty_is_monotone(tokens: int, max_length: int, cache_length: int) -> None:
    cache_length = min(cache_length, max_length)
    shorter = length.overlong_penalty(tokens, max_length=max_length, cache_length=cache_length)
    longer = length.overlong_penalty(tokens + 1, max_length=max_length, cache_length=cache_length)
    assert -1.0 <= longer <= shorter <= 0.0


@PROPERTY_SETTINGS
@given(st.lists(st.sampled_from(["alpha", "beta", "数", "学", " ", "$x$", "\\frac", "42"]), max_size=50).map("".join))
def test_language_shares_sum_to_at_most_one(text: str) -> None:
    english, chinese = language.script_share(text, "en"), language.script_share(text, "zh")
    assert 0.0 <= english <= 1.0 and 0.0 <= chinese <= 1.0
    assert english + chinese == pytest.approx(1.0) or english + chinese == 0.0
