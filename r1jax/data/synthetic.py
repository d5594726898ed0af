"""Synthetic pretraining text for a tiny Countdown base model: format and arithmetic, no judgement.

A trace is the completion that follows `prompts.compact_prompt`: a few distinct attempts, each a
random equation over ALL the problem's numbers written with its value, and the last attempt as the
answer, whether or not it hits the target. The number of attempts is drawn before any is made, so
the trace stops after a miss as readily as after a hit:

    Numbers: 12 7 3. Target: 16.\n<think>   <- prompt
    12+7-3=16, (12+7)*3=57</think>\n<answer>(12+7)*3</answer><|endoftext|>   <- 'inline' completion

A model pretrained on this can compute attempts and write the format, but ends its search at random.
The policy that keeps trying until an attempt's value equals the target and then answers it (checking
its own work) scores far higher: the headroom GRPO is meant to find.

Attempts follow the Countdown game's rules, as `r1jax.data.countdown` does when it makes problems:
every intermediate value is a positive integer (subtraction takes the smaller from the larger,
division only when exact). Values are computed on integers, never with `eval`. Styles:

* 'inline': `(12+7)*3=57`, the whole value in one step.
* 'chain': `(12+7)*3=19*3=57`, one operation reduced per step (the leftmost innermost one), so each
  step is a single two-operand operation a tiny model can learn; the answer stays a copy of the
  first expression. With two numbers both styles are identical.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from r1jax.data.char_tokenizer import EOS
from r1jax.data.countdown import CountdownExample
from r1jax.data.prompts import compact_prompt

TraceStyle = Literal["inline", "chain"]
STYLES: tuple[TraceStyle, ...] = ("inline", "chain")
ATTEMPT_SEPARATOR = ", "
_DRAWS_PER_ATTEMPT = 20  # random draws allowed per distinct attempt before a trace settles for fewer

# An expression: a number, or (operator, left, right).
Expression = int | tuple[str, "Expression", "Expression"]

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def value_of(expression: Expression) -> int:
    """The exact value; the game's rules make every intermediate value a positive integer."""
    if isinstance(expression, int):
        return expression
    op, left, right = expression
    a, b = value_of(left), value_of(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    quotient, remainder = divmod(a, b)
    if remainder:
        raise ValueError(f"{a}/{b} is not exact")
    return quotient


def render(expression: Expression) -> str:
    """Infix text without spaces and with only the parentheses precedence needs.

    A right operand of equal precedence keeps its parentheses even where the value would not change
    (`a+(b-c)`), so the text reads left to right exactly as the tree evaluates.
    """
    if isinstance(expression, int):
        return str(expression)
    op, left, right = expression
    left_text, right_text = render(left), render(right)
    if not isinstance(left, int) and _PRECEDENCE[left[0]] < _PRECEDENCE[op]:
        left_text = f"({left_text})"
    if not isinstance(right, int) and _PRECEDENCE[right[0]] <= _PRECEDENCE[op]:
        right_text = f"({right_text})"
    return f"{left_text}{op}{right_text}"


def random_expression(rng: random.Random, nums: Sequence[int], max_value: int | None = None) -> Expression:
    """A random game-legal expression using every number once: random pairs merged until one is left.

    With `max_value`, merges whose value exceeds it are avoided (one always remains when the numbers
    are within the bound: the difference, or the quotient 1 of equal values), so every intermediate
    value stays small and a tiny model meets far fewer distinct arithmetic facts.
    """
    pool: list[Expression] = list(nums)
    while len(pool) > 1:
        first = pool.pop(rng.randrange(len(pool)))
        second = pool.pop(rng.randrange(len(pool)))
        big, small = (first, second) if value_of(first) >= value_of(second) else (second, first)
        merges: list[Expression] = [("+", first, second), ("*", first, second)]
        if value_of(big) > value_of(small):
            merges.append(("-", big, small))
        if value_of(big) % value_of(small) == 0:
            merges.append(("/", big, small))
        if max_value is not None:
            merges = [m for m in merges if value_of(m) <= max_value] or merges
        pool.append(rng.choice(merges))
    return pool[0]


def reduce_once(expression: Expression) -> Expression:
    """The expression with its leftmost innermost operation replaced by that operation's value."""
    op, left, right = expression
    if isinstance(left, int) and isinstance(right, int):
        return value_of(expression)
    if not isinstance(left, int):
        return (op, reduce_once(left), right)
    return (op, left, reduce_once(right))


def attempt_text(expression: Expression, style: TraceStyle) -> str:
    """One attempt as written in the think block: the expression, '=', and its value (via steps for 'chain')."""
    if style == "inline" or isinstance(expression, int):
        return f"{render(expression)}={value_of(expression)}"
    if style != "chain":
        raise ValueError(f"unknown trace style {style!r}; expected one of {STYLES}")
    steps = [render(expression)]
    while not isinstance(expression, int):
        expression = reduce_once(expression)
        steps.append(render(expression))
    return "=".join(steps)


def countdown_trace(rng: random.Random, example: CountdownExample, *, min_attempts: int = 1, max_attempts: int = 4,
                    style: TraceStyle = "inline", max_value: int | None = None) -> str:
    """The completion after the compact prompt: distinct attempts, the last one as the answer, then EOS.

    Fewer than the drawn number of attempts are written when the problem has no more distinct ones.
    """
    if not 1 <= min_attempts <= max_attempts:
        raise ValueError(f"need 1 <= min_attempts <= max_attempts, got {min_attempts}, {max_attempts}")
    if style not in STYLES:
        raise ValueError(f"unknown trace style {style!r}; expected one of {STYLES}")
    count = rng.randint(min_attempts, max_attempts)
    attempts: dict[str, Expression] = {}  # by rendered text, in order
    for _ in range(_DRAWS_PER_ATTEMPT * count):
        expression = random_expression(rng, example["nums"], max_value)
        attempts.setdefault(render(expression), expression)
        if len(attempts) == count:
            break
    thinking = ATTEMPT_SEPARATOR.join(attempt_text(a, style) for a in attempts.values())
    return f"{thinking}</think>\n<answer>{list(attempts)[-1]}</answer>{EOS}"


def arithmetic_facts(count: int, *, max_number: int, max_value: int, seed: int = 0) -> list[tuple[str, str]]:
    """`count` single-operation drills as (prompt, completion) pairs such as ('19*3=', '57').

    These are the steps of bounded 'chain' attempts on three numbers: game-legal operations on a value
    up to `max_value` and a problem number up to `max_number`, with a result up to `max_value`. The
    operator is uniform and the operands uniform among its legal pairs, so products and quotients are
    as common as sums. Traces alone show each fact too rarely for a tiny model to learn the arithmetic;
    mixed into pretraining, these drills teach it.
    """
    legal: dict[str, list[tuple[int, int]]] = {op: [] for op in "+-*/"}
    for left in range(1, max_value + 1):
        for right in range(1, max_value + 1):
            if min(left, right) > max_number:
                continue
            for op in "+-*/":
                if (op == "-" and left <= right) or (op == "/" and left % right):
                    continue
                if value_of((op, left, right)) <= max_value:
                    legal[op].append((left, right))
    rng = random.Random(f"arithmetic-facts-{seed}")
    facts = []
    for _ in range(count):
        op = rng.choice("+-*/")
        left, right = rng.choice(legal[op])
        facts.append((f"{left}{op}{right}=", str(value_of((op, left, right)))))
    return facts


def countdown_corpus(examples: Sequence[CountdownExample], *, traces_per_example: int = 1, seed: int = 0,
                     min_attempts: int = 1, max_attempts: int = 4, style: TraceStyle = "inline",
                     max_value: int | None = None) -> list[tuple[str, str]]:
    """(compact prompt, trace) pairs, `traces_per_example` per example, deterministic in `seed`."""
    rng = random.Random(f"countdown-corpus-{seed}")
    return [(compact_prompt(example["nums"], example["target"]),
             countdown_trace(rng, example, min_attempts=min_attempts, max_attempts=max_attempts, style=style,
                             max_value=max_value))
            for _ in range(traces_per_example) for example in examples]
