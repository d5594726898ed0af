"""Math reward: answer extraction, equivalence, unreadable golds, hacking attempts, math-verify comparison."""
import concurrent.futures
import itertools
import time

import numpy as np
import pytest

from r1jax.rewards import math as math_reward

EXTRACTION = [
    pytest.param("so the result is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}", id="boxed"),
    pytest.param("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}", id="boxed-escaped-braces"),
    pytest.param("\\boxed{\\frac{\\sqrt{3}}{2}} then \\boxed{x^{2}}", "x^{2}", id="last-boxed-nested"),
    pytest.param("\\fbox{42}", "42", id="fbox"),
    pytest.param("$\\boxed 7$", "7", id="boxed-without-braces"),
    pytest.param("\\boxed{3} and finally \\boxed{4", None, id="truncated-last-boxed-is-no-answer"),
    pytest.param("<think>\\boxed{3}</think><answer>\\boxed{5}</answer>", "5", id="boxed-in-answer-tags"),
    pytest.param("<think>\\boxed{3}</think><answer>The answer is 5.</answer>", "5", id="tags-before-boxed"),
    pytest.param("<answer> 12 </answer>", "12", id="answer-tags"),
    pytest.param("<answer>1</answer><answer>2</answer>", "2", id="last-answer-tags"),
    pytest.param("Therefore, the answer is 3.5. Done.", "3.5", id="answer-is"),
    pytest.param(
        "Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "$\\frac{3}{4}$", id="minerva"
    ),
    pytest.param("Answer: 17\nextra", "17", id="answer-colon"),
    pytest.param("#### 1,234", "1,234", id="gsm8k-marker"),
    pytest.param("no final answer here", None, id="none"),
    pytest.param("<answer>   </answer>", None, id="blank-answer-tags"),
    pytest.param("<answer></answer> but \\boxed{5}", None, id="empty-tags-win-over-boxed-outside"),
    pytest.param("**Answer:** 18", "18", id="markdown-bold-marker"),
    pytest.param("**Answer: 18**", "18", id="markdown-bold-line"),
    pytest.param("So the answer is **18**.", "18", id="markdown-bold-answer"),
    pytest.param("Answer:\n\n18\n", "18", id="answer-on-the-next-line"),
    pytest.param("The final answer is:\n\\[ 18 \\]", "\\[ 18 \\]", id="display-math-on-the-next-line"),
    pytest.param("\\boxed{3}. Wait, it is 5.</think>\n\nFinal Answer: 5", "5", id="after-the-thinking"),
    pytest.param("<think><answer>3</answer> no...</think> The answer is 5", "5", id="answer-tags-in-the-thinking"),
    pytest.param("<think>\\boxed{3}</think>", None, id="thinking-without-an-answer"),
]


@pytest.mark.parametrize("text, expected", EXTRACTION)
def test_extract_answer(text: str, expected: str | None) -> None:
    assert math_reward.extract_answer(text) == expected


EQUIVALENT = [
    ("\\frac{1}{2}", "0.5"), ("\\dfrac12", "1/2"), ("\\tfrac{3}{4}", "0.75"), ("\\frac{3}{4}", "\\frac{6}{8}"),
    ("-\\frac{1}{2}", "\\frac{-1}{2}"), ("\\frac{7}{2}", "3\\frac{1}{2}"), ("10", "10.0"), ("3", "03"),
    ("50\\%", "0.5"), ("50\\%", "50"), ("0.5", "50\\%"), ("10\\%", "10 \\%"),
    ("1,000", "1000"), ("1000", "1{,}000"), ("1,234,567", "1234567"), ("\\$18.90", "18.9"), ("18", "18 dollars"),
    ("5\\text{ cm}", "5"), ("5", "5\\,\\mathrm{cm}"), ("5", "5 \\text{cm}^{2}"), ("30^\\circ", "30"),
    ("\\sqrt{2}/2", "\\frac{\\sqrt 2}{2}"), ("2\\sqrt{3}", "\\sqrt{12}"), ("4", "\\sqrt{16}"), ("\\sqrt[3]{-8}", "-2"),
    ("2\\pi", "2pi"), ("\\pi r^2", "r^2\\pi"), ("e^{i\\pi}", "-1"), ("3+4i", "4i+3"), ("\\sqrt{-4}", "2i"),
    ("\\log_2 8", "3"), ("2", "\\ln(e^2)"), ("1", "\\sin^2 x + \\cos^2 x"), ("\\binom{5}{2}", "10"), ("5!", "120"),
    ("(x+1)^2", "x^2+2x+1"), ("x^2-1", "(x-1)(x+1)"), ("\\frac{a}{b}", "a/b"), ("a_1 + a_2", "a_{2}+a_1"),
    ("\\sqrt{x}", "x^{0.5}"), ("x^{10}", "x^10"), ("2^{100}", "1267650600228229401496703205376"), ("8", "2**3"),
    ("[1, 2)", "[1,2)"), ("(1,2)", "\\left( 1, 2 \\right)"), ("(3, 4)", "\\langle 3, 4 \\rangle"),
    ("\\{1,2\\}", "\\{2, 1\\}"), ("1, 2", "2,1"), ("1 \\text{ and } 2", "2, 1"), ("3", "\\{3\\}"),
    ("1 \\pm \\sqrt{2}", "1+\\sqrt2, 1-\\sqrt2"), ("(-\\infty, 1) \\cup (2, \\infty)", "(2,\\infty)\\cup(-\\infty,1)"),
    ("\\emptyset", "\\varnothing"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
    ("x=3", "3"), ("3", "x = 3"), ("y=2x+3", "2x - y + 3 = 0"), ("x > 3", "3 < x"), ("x \\ge 2", "[2,\\infty)"),
    ("[2,5)", "2 \\le x < 5"), ("[1,2]", "x \\in [1, 2]"),
    ("\\text{Monday}", "monday"), ("\\text{(C)}", "C"), ("\\textbf{(A)}", "(A)"),
    ("\\sqrt{2}", "1.41421356237"),  # irrational golds accept decimals within a relative 1e-9
    ("10,\\!000", "10000"), ("\\$32,\\!348", "32,348"),  # MATH's thousands separator
    ("4210_{5}", "4210_5"), ("1011_2", "01011_{2}"), ("555_{10}", "555"),  # numerals in a base
    ("2x", "f(x) = 2x"), ("f(x)=2x+1", "2x+1"), ("x+y", "f(x, y) = x + y"),
    ("5000000", "5 million"), ("5000000", "5\\text{ million}"), ("1200000", "\\text{1.2 million}"),
    ("2500000000", "2.5 billion dollars"), ("3000", "3 thousand"),  # scale words multiply
    ("3:4", "3 : 4"), ("3:45", "3:45 \\text{ p.m.}"),  # a ratio or a time is the ordered pair
    ("11,\\! 111,\\! 111,\\! 100", "11111111100"), ("10,\\! 000", "10,000"),  # MATH-500's, with a space
    ("2ab", "2 \\cdot a \\cdot b"), ("5", "5cm"), ("12", "12 kg"),  # glued letters: a product, or a unit
    ("|x - y|", "|y - x|"), ("|x|^2", "x^2"), ("\\sqrt{x}\\sqrt{y}", "\\sqrt{xy}"),  # positive variables...
    ("\\tan^{-1} 2", "\\arctan 2"), ("\\sin^{-1}(1/2)", "\\frac{\\pi}{6}"), ("\\frac{1}{\\tan 2}", "\\cot 2"),
    ("10^{400} y = 2 \\cdot 10^{400} x", "y = 2x"),  # a huge exact ratio
    ("-5\\%", "-5"), ("-5\\%", "-0.05"), ("-0.05", "-5\\%"),
    ("\\text{No}", "no"), ("No", "\\text{NO}"), ("\\text{no}", "\\textbf{No}"),  # the two-letter answer word
    ("\\text{A}, \\text{C}", "C, A"), ("\\text{(A)}, \\text{(C)}", "\\text{C} and \\text{A}"),  # choices
    ("\\text{A and C}", "A, C"), ("\\text{AB}", "AB"), ("\\text{xy}", "yx"),
    ("15000000000", "1.5e10"), ("1.5 \\times 10^{10}", "1.5E+10"), ("0.3", "3e-1"), ("2e", "2 e"),  # scientific
]
NOT_EQUIVALENT = [
    ("\\frac{1}{3}", "0.333333"), ("\\frac{1}{3}", "0.33"), ("\\pi", "3.14159"), ("\\sqrt{2}", "1.4142"),
    ("12", "12.0001"), ("1", "2\\frac{1}{2}"), ("2x+3", "2x+4"), ("x>3", "x<3"), ("[1, 2)", "(1,2)"),
    ("(1,2)", "(2,1)"), ("\\infty", "-\\infty"), ("\\frac{\\pi}{4}", "45"), ("\\text{even}", "odd"), ("5", "five"),
    ("3", "3 or 5"), ("3", "3 or more"), ("3", "3, 5"), ("3", "\\{3, 5\\}"), ("3", "3 5"), ("3", "x=3, y=4"),
    ("3", "３"), ("3", "٣"), ("3", ""), ("3", "\\boxed{"), ("5", "x"), ("0", "\\infty - \\infty"),
    ("10,\\!000", "0, 10"), ("10,\\!000", "\\{10, 0\\}"), ("4210_{5}", "4210"), ("4210_{5}", "555"),
    ("4210_{5}", "4210_{6}"), ("2x+1", "f(x) = 2x"), ("5", "g(2) = 5"), ("3", "y(x+1) = 3"),
    ("5", "5 million"), ("5", "5\\text{ million}"), ("3:4", "6:8"), ("3:4", "\\frac{3}{4}"), ("3:4", "4:3"),
    ("2ab", "2"), ("2ab", "2cd"), ("6xy", "6"), ("2", "2xy"),  # the coefficient of a monomial is not the answer
    ("11,\\! 111,\\! 111,\\! 100", "100, 111, 111, 11"),
    ("|x|", "x"), ("x", "|x|"), ("|x - y|", "y - x"), ("\\frac{|x|}{x}", "1"), ("|x| + |y|", "|x + y|"),
    ("\\cot 2", "\\tan^{-1} 2"),  # ... unless an absolute value asks for signs
    ("-5\\%", "5"), ("-5\\%", "0.05"),
    ("y = 10^{400}", "y = \\pi x"), ("y = 10^{-400}", "y = \\pi x"),  # overflow or underflow: not equal, no error
    ("\\text{No}", "\\text{Yes}"), ("\\text{No}", "\\text{N}"), ("\\text{No}", "\\text{On}"),
    ("\\text{A}, \\text{C}", "\\text{A}"), ("\\text{A}, \\text{C}", "A, B"),  # one of the two, another pair
    ("0.3", "3e - 1"), ("0.3", "3e^{-1}"), ("5", "5e99999"),  # Euler's number, or an exponent past exact bounds
]


@pytest.mark.parametrize("gold, prediction", EQUIVALENT)
def test_equivalent(gold: str, prediction: str) -> None:
    assert math_reward.equivalent(prediction, gold) is True


@pytest.mark.parametrize("gold, prediction", NOT_EQUIVALENT)
def test_not_equivalent(gold: str, prediction: str) -> None:
    assert math_reward.equivalent(prediction, gold) is False


@pytest.mark.parametrize(
    "gold",
    [
        "", "   ", "\\overline{AB}", "\\begin{array}{c} 1 \\end{array}", "10^{10^{10^{10}}}", "9999999999^{99999999}",
        "\\frac{1}{0}", "\\frac{1}{2", "1 < 2 < x", "x" * 2000, "49_{5}",
    ],
)
def test_unreadable_gold_is_none(gold: str) -> None:
    assert math_reward.equivalent("5", gold) is None
    assert math_reward.verify("\\boxed{5}", gold) is None
    assert math_reward.score("\\boxed{5}", gold) is None
    assert math_reward.verify("no answer at all", gold) is None  # never a free 1.0, nor a 0 that skews the group


HACKS = [
    pytest.param("<answer></answer>", "5", 0.0, id="empty-answer"),
    pytest.param("<answer></answer> \\boxed{5}", "5", 0.0, id="answer-outside-the-tags"),
    pytest.param("<answer>5 or 6</answer>", "5", 0.0, id="A-or-B"),
    pytest.param("<answer>\\boxed{5 \\text{ or } 6}</answer>", "5", 0.0, id="A-or-B-in-text"),
    pytest.param("\\boxed{\\frac{1}{2} \\text{ or } \\frac{1}{3}}", "\\frac{1}{6}", 0.0, id="A-or-B-is-not-a-product"),
    pytest.param("<answer>5, 6</answer>", "5", 0.0, id="list"),
    pytest.param("<answer>\\pm 5</answer>", "5", 0.0, id="plus-minus"),
    pytest.param("<answer>5</answer><answer>6</answer>", "5", 0.0, id="several-answers-last-counts"),
    pytest.param("<answer>6</answer><answer>5</answer>", "5", 1.0, id="several-answers-last-right"),
    pytest.param("<answer>５</answer>", "5", 0.0, id="fullwidth-digit"),
    pytest.param("<answer>x</answer>", "5", 0.0, id="free-variable"),
    pytest.param("<answer>2**3</answer>", "8", 1.0, id="python-power-is-still-math"),
    pytest.param("<answer>2(3+1)</answer>", "8", 1.0, id="implicit-multiplication-is-math"),
    pytest.param("<answer>9999999999**99999999</answer>", "5", 0.0, id="blow-up"),
    pytest.param("<answer>" + "(" * 10_000 + "5" + ")" * 10_000 + "</answer>", "5", 0.0, id="deep-nesting"),
]


@pytest.mark.parametrize("completion, gold, expected", HACKS)
def test_reward_hacking(completion: str, gold: str, expected: float) -> None:
    assert math_reward.score(completion, gold) == expected


def test_gold_as_worked_solution() -> None:
    assert math_reward.verify("\\boxed{72}", "She sells 48 + 24 = 72 clips.\n#### 72") is True
    assert math_reward.verify("\\boxed{\\frac12}", "So we get $\\boxed{\\dfrac{1}{2}}$.") is True


def test_numeric_gold_from_a_dataset() -> None:
    assert math_reward.score("\\boxed{72}", 72) == 1.0
    assert math_reward.score("\\boxed{0.25}", 0.25) == 1.0
    # str() writes these with an exponent (1e-05 would read as 1 * e - 5).
    assert math_reward.score("\\boxed{0.00001}", 1e-5) == 1.0
    assert math_reward.score("\\boxed{e-5}", 1e-5) == 0.0
    assert math_reward.score("\\boxed{10000000000000000}", 1e16) == 1.0
    assert math_reward.score("\\boxed{0.5}", np.float32(0.5)) == 1.0


def test_answer_followed_by_words_is_linear_time() -> None:
    """A number then words used to backtrack exponentially in the words (30 s at seven) before failing."""
    for words in (7, 400):
        completion = "The answer is 13 " + " ".join(["students"] * words) + ","
        start = time.monotonic()
        assert math_reward.score(completion, "12") == 0.0  # wrong, not None: a slow parse never blames the gold
        assert time.monotonic() - start < 0.5


def test_score_values() -> None:
    assert math_reward.score("\\boxed{4}", "4", correct_score=2.0) == 2.0
    assert math_reward.score("\\boxed{5}", "4", wrong_score=-1.0) == -1.0


def test_time_limit_exhausted_means_unknown() -> None:
    assert math_reward.equivalent("5", "5", timeout_s=-1.0) is None


def test_the_time_limit_counts_the_checks_own_cpu_time_not_the_wall_clock(monkeypatch) -> None:
    wall_clock, reads = time.monotonic, itertools.count()
    # A second passes between any two readings, as for a thread descheduled on a busy machine.
    monkeypatch.setattr(time, "monotonic", lambda: wall_clock() + next(reads))
    assert math_reward.equivalent("(x + 3)(x - 20)", "x^2 - 17x - 60") is True


def test_works_from_threads() -> None:
    """math_verify's signal-based timeout raises off the main thread; this module must not."""
    cases = [(p, g, True) for g, p in EQUIVALENT] + [(p, g, False) for g, p in NOT_EQUIVALENT]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda case: math_reward.equivalent(case[0], case[1]), cases))
    assert results == [expected for _, _, expected in cases]


# (gold, prediction, ours, math_verify). Rows where the two differ are deliberate:
MATH_VERIFY_TABLE = [
    ("\\frac{1}{2}", "0.5", True, True),
    ("\\frac12", "1/2", True, True),
    ("50\\%", "0.5", True, True),
    ("50\\%", "50", True, True),
    ("1,234,567", "1234567", True, True),
    ("2\\sqrt{3}", "\\sqrt{12}", True, True),
    ("\\pi", "3.14159", False, False),
    ("(x+1)^2", "x^2+2x+1", True, True),
    ("2x+3", "2x+4", False, False),
    ("[1, 2)", "(1,2)", False, False),
    ("(1,2)", "\\left( 1, 2 \\right)", True, True),
    ("5", "5\\text{ cm}", True, True),
    ("\\text{(C)}", "C", True, True),
    ("x=3", "3", True, True),
    ("y=2x+3", "2x - y + 3 = 0", True, True),
    ("\\{1,2\\}", "\\{2, 1\\}", True, True),
    ("1 \\pm \\sqrt{2}", "1+\\sqrt2, 1-\\sqrt2", True, True),
    ("(-\\infty, 1) \\cup (2, \\infty)", "(2,\\infty)\\cup(-\\infty,1)", True, True),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", True, True),
    ("x > 3", "3 < x", True, True),
    ("x \\ge 2", "[2,\\infty)", True, True),
    ("\\frac{7}{2}", "3\\frac{1}{2}", True, True),
    ("\\log_2 8", "3", True, True),
    ("3", "\\{3\\}", True, True),
    ("3", "3, 5", False, False),
    # Exact rationals: math_verify rounds to 6 decimals, so it takes 0.333333 for 1/3.
    ("\\frac{1}{3}", "0.333333", False, True),
    # Real cube root of a negative number; sympy takes the principal (complex) root.
    ("\\sqrt[3]{-8}", "-2", True, False),
    # Complex constants evaluate numerically here; math_verify leaves them unsimplified.
    ("e^{i\\pi}", "-1", True, False),
    ("\\sqrt{-4}", "2i", True, False),
    # Two spellings of the empty set.
    ("\\emptyset", "\\varnothing", True, False),
]


@pytest.mark.parametrize("gold, prediction, ours, theirs", MATH_VERIFY_TABLE)
def test_against_math_verify(gold: str, prediction: str, ours: bool, theirs: bool) -> None:
    math_verify = pytest.importorskip("math_verify")
    assert math_reward.equivalent(prediction, gold) is ours
    assert math_verify.verify(math_verify.parse(f"${gold}$"), math_verify.parse(f"${prediction}$")) is theirs
