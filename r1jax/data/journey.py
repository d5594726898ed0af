"""Journey-learning SFT data for Countdown: long thoughts that keep wrong attempts, the check that catches
each one and the step back, then the right path (O1 Replication Journey, Qin et al. 2024); and the
matching shortcut data, the right path alone.

A completion follows `prompts.compact_prompt` and writes attempts as `r1jax.data.synthetic` does (the
text the tiny Countdown base model is pretrained on), each followed by its check:

    Numbers: 12 7 3. Target: 16.\\n<think>                                                  <- prompt
    12*7-3=81, not 16. Try another. 12-7+3=8, not 16. Try another. 12+7-3=16, equals 16.
        </think>\\n<answer>12+7-3</answer><|endoftext|>                                  <- 'journey'
    12+7-3=16, equals 16.</think>\\n<answer>12+7-3</answer><|endoftext|>                  <- 'shortcut'

The right path is the problem's reference solution (every Countdown problem carries one), so a problem's
journey and shortcut end in the same attempt and answer and differ only by the detour. Wrong attempts
are random game-legal expressions over all the numbers (`synthetic.random_expression`) whose value
misses the target, each with a value no earlier attempt had, so "Try another" always leads to a new
result. Values stay within `max_value` (as the pretraining attempts do), unless that leaves fewer than
`min_wrong` attempts; a problem with fewer distinct wrong values than drawn gets fewer wrong attempts.
Deterministic in `seed`.

    records = journey.corpus(examples, variant="journey", seed=0)   # {"prompt", "completion", ...} dicts

For any task, `stitch` builds a journey from a model's own samples of one prompt, judged by a verifier:
the reasoning of wrong ones, each followed by a transition ("Wait, ..."), then a right one whole. `mode:
distill` with `keep: 'journey'` writes such records (`r1jax.distill`).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any, Literal

from r1jax.data import synthetic
from r1jax.data.char_tokenizer import EOS
from r1jax.data.countdown import CountdownExample
from r1jax.data.prompts import compact_prompt
from r1jax.data.synthetic import Expression

Variant = Literal["journey", "shortcut"]
VARIANTS: tuple[Variant, ...] = ("journey", "shortcut")
WRONG_STEP = "{attempt}, not {target}. Try another. "
RIGHT_STEP = "{attempt}, equals {target}."
_DRAWS_PER_ATTEMPT = 20  # random draws allowed per wrong attempt before a journey settles for fewer
_SOLUTION_TOKEN = re.compile(r"[0-9]+|[-+*/()]")


def parse_solution(text: str) -> Expression:
    """The expression tree of a reference solution as `r1jax.data.countdown` writes it ("(12 + 7) - 3").

    Every compound operand there is parenthesised, so each level is `operand [op operand]`.
    """
    tokens = _SOLUTION_TOKEN.findall(text)

    def expression(i: int) -> tuple[Expression, int]:
        left, i = operand(i)
        if i < len(tokens) and tokens[i] in "+-*/":
            right, end = operand(i + 1)
            return (tokens[i], left, right), end
        return left, i

    def operand(i: int) -> tuple[Expression, int]:
        if i >= len(tokens):
            raise ValueError(f"solution {text!r} ends early")
        if tokens[i] == "(":
            inner, i = expression(i + 1)
            if i >= len(tokens) or tokens[i] != ")":
                raise ValueError(f"solution {text!r} has an unclosed parenthesis")
            return inner, i + 1
        if not tokens[i].isdigit():
            raise ValueError(f"solution {text!r}: expected a number at {tokens[i]!r}")
        return int(tokens[i]), i + 1

    tree, end = expression(0)
    if end != len(tokens):
        raise ValueError(f"solution {text!r} has text after the expression")
    return tree


def wrong_attempts(rng: random.Random, nums: Sequence[int], target: int, count: int, *,
                   max_value: int | None = None, at_least: int = 0) -> list[Expression]:
    """Up to `count` random game-legal expressions over all `nums`, values distinct and all != `target`.

    Every value stays within `max_value`, except that attempts without the bound are added when fewer
    than `at_least` bounded ones exist (two numbers often have a single bounded result: the target).
    """
    found: dict[int, Expression] = {}  # by value

    def draw(bound: int | None, wanted: int) -> None:
        for _ in range(_DRAWS_PER_ATTEMPT * wanted):
            if len(found) >= wanted:
                return
            expression = synthetic.random_expression(rng, nums, bound)
            value = synthetic.value_of(expression)
            if value != target and (bound is None or value <= bound):
                found.setdefault(value, expression)

    draw(max_value, count)
    if max_value is not None:
        draw(None, min(at_least, count))
    return list(found.values())


def completion(rng: random.Random, example: CountdownExample, *, variant: Variant, min_wrong: int = 0,
               max_wrong: int = 3, style: synthetic.TraceStyle = "inline", max_value: int | None = None) -> str:
    """The text after the compact prompt: (for 'journey') wrong attempts with their checks, the right
    attempt, the answer, EOS."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    if not 0 <= min_wrong <= max_wrong:
        raise ValueError(f"need 0 <= min_wrong <= max_wrong, got {min_wrong}, {max_wrong}")
    target = example["target"]
    right = parse_solution(example["solution"])
    if synthetic.value_of(right) != target:
        raise ValueError(f"solution {example['solution']!r} does not make {target}")
    steps = []
    if variant == "journey":
        wrong = wrong_attempts(rng, example["nums"], target, rng.randint(min_wrong, max_wrong), max_value=max_value,
                               at_least=min_wrong)
        steps = [WRONG_STEP.format(attempt=synthetic.attempt_text(w, style), target=target) for w in wrong]
    steps.append(RIGHT_STEP.format(attempt=synthetic.attempt_text(right, style), target=target))
    return f"{''.join(steps)}</think>\n<answer>{synthetic.render(right)}</answer>{EOS}"


def stitch(wrong: Sequence[str], right: str, *, transition: str, think_open: str = "<think>",
           think_close: str = "</think>") -> str:
    """One long thought from completions of one prompt: the reasoning of each `wrong` one (its text before
    `think_close`, or all of it without one) followed by `transition`, then `right` whole.

    Pieces after the first lose leading whitespace and a leading `think_open`, so the thought opens once
    whether the prompt or the completion writes the tag.
    """
    pieces = []
    for index, text in enumerate([*wrong, right]):
        if index:
            text = text.lstrip()
            text = text[len(think_open):].lstrip() if think_open and text.startswith(think_open) else text
        if index < len(wrong):
            text = text.split(think_close, 1)[0].rstrip() + transition
        pieces.append(text)
    return "".join(pieces)


def corpus(examples: Sequence[CountdownExample], *, variant: Variant, seed: int = 0, traces_per_example: int = 1,
           min_wrong: int = 0, max_wrong: int = 3, style: synthetic.TraceStyle = "inline",
           max_value: int | None = None) -> list[dict[str, Any]]:
    """SFT records `{"prompt", "completion", "prompt_id", "variant"}`, `traces_per_example` per example."""
    rng = random.Random(f"journey-{seed}")
    return [dict(prompt=compact_prompt(example["nums"], example["target"]),
                 completion=completion(rng, example, variant=variant, min_wrong=min_wrong, max_wrong=max_wrong,
                                       style=style, max_value=max_value),
                 prompt_id=index, variant=variant)
            for _ in range(traces_per_example) for index, example in enumerate(examples)]
