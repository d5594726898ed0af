"""Countdown reward (TinyZero): reach `target` from `nums` with + - * / and parentheses.

The equation is the content of the last `<answer>...</answer>`. Scores:
  * no answer block, or an empty one                   -> 0
  * an answer that is not a valid, exact solution      -> `format_score`
    (characters other than ASCII digits, `+ - * /`, parentheses and whitespace; numbers other than
    `nums` each used exactly once; syntax errors such as `**`, `//` or implicit multiplication;
    division by zero; too long or too deeply nested; a value that misses the target)
  * value == target, exactly                            -> `correct_score`

Stricter than TinyZero's `eval`-based check where that check was hackable or accidental: no `**`
power, no decimal points, no unicode digits. Unary minus is kept, as `eval` allowed it. Values are
exact (`fractions.Fraction`), so a near miss such as `7 + 1/(50*50*50)` for 7 is a miss (TinyZero's
float check accepts anything within 1e-5); the parser is ours, never `eval`.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from fractions import Fraction

from r1jax.rewards.format import ANSWER_TAG, last_tag_content

MAX_EQUATION_CHARS = 512
MAX_NESTING = 32

# Explicit ASCII classes: `\d` and str.isdigit() would also accept digits such as '１' or '٣'.
_ALLOWED = re.compile(r"[0-9+\-*/()\s]+")
_NUMBER = re.compile(r"[0-9]+")
_TOKEN = re.compile(r"[0-9]+|[-+*/()]")


class _InvalidEquation(Exception):
    """The equation cannot be evaluated."""


def extract_equation(completion: str) -> str | None:
    """The stripped content of the last `<answer>...</answer>`, or None if there is none."""
    content = last_tag_content(completion, ANSWER_TAG)
    return None if content is None else content.strip()


def uses_each_number_once(equation: str, nums: Sequence[int]) -> bool:
    """Whether the integers written in `equation` are exactly `nums` as a multiset ("07" reads as 7, as int() would)."""
    # Compared as canonical digit strings: int() on a megabyte-long literal would raise.
    written = sorted(number.lstrip("0") or "0" for number in _NUMBER.findall(equation))
    return written == sorted(str(int(n)) for n in nums)


def evaluate_equation(equation: str) -> Fraction | None:
    """Exact value of an arithmetic expression over integers; None if it is not one.

    None for disallowed characters, syntax errors, division by zero, or an expression longer than
    MAX_EQUATION_CHARS or nested deeper than MAX_NESTING.
    """
    if len(equation) > MAX_EQUATION_CHARS or not _ALLOWED.fullmatch(equation):
        return None
    # Spaces separate tokens: "1 2" is two numbers (a syntax error), not 12.
    tokens = [token for chunk in equation.split() for token in _TOKEN.findall(chunk)]
    parser = _Parser(tokens)
    try:
        value = parser.expression(depth=0)
        if parser.position != len(tokens):
            return None
        return value
    except (_InvalidEquation, ZeroDivisionError):
        return None


def score(
    completion: str,
    nums: Sequence[int],
    target: int | str,
    *,
    format_score: float = 0.1,
    correct_score: float = 1.0,
) -> float:
    """TinyZero Countdown reward for one completion (see the module docstring).

    `target` may be any rational `Fraction()` accepts: an int, a numpy integer, or digits as text.
    """
    equation = extract_equation(completion)
    if not equation:  # an empty answer would otherwise farm the format score
        return 0.0
    if not uses_each_number_once(equation, nums):
        return format_score
    value = evaluate_equation(equation)
    if value is None or value != Fraction(target):
        return format_score
    return correct_score


class _Parser:
    """Recursive descent over tokens: expression := term (('+'|'-') term)*, term := factor (('*'|'/') factor)*."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.position = 0

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise _InvalidEquation("unexpected end")
        self.position += 1
        return token

    def expression(self, depth: int) -> Fraction:
        value = self._term(depth)
        while self._peek() in ("+", "-"):
            value = value + self._term(depth) if self._take() == "+" else value - self._term(depth)
        return value

    def _term(self, depth: int) -> Fraction:
        value = self._factor(depth)
        while self._peek() in ("*", "/"):
            value = value * self._factor(depth) if self._take() == "*" else value / self._factor(depth)
        return value

    def _factor(self, depth: int) -> Fraction:
        if depth > MAX_NESTING:
            raise _InvalidEquation("nested too deeply")
        token = self._take()
        if token == "-":
            return -self._factor(depth + 1)
        if token == "(":
            value = self.expression(depth + 1)
            if self._take() != ")":
                raise _InvalidEquation("unbalanced parenthesis")
            return value
        if token.isdigit():  # tokens come from an ASCII-only regex
            return Fraction(int(token))
        raise _InvalidEquation(f"unexpected {token!r}")
