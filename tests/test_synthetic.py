"""Synthetic Countdown traces: well-formed distinct attempts, the last one the answer, rewards that match.

Values are checked with this file's own evaluator (Python's `ast` + exact fractions), independent
of both the generator's arithmetic and the reward's parser.
"""
from __future__ import annotations

import ast
import random
from fractions import Fraction

import pytest

from r1jax.data import countdown, synthetic
from r1jax.data.char_tokenizer import EOS
from r1jax.rewards import countdown as countdown_reward

CONFIG = countdown.CountdownConfig(min_count=2, max_count=3, max_number=20, max_target=50, train_size=300,
                                   test_size=10, seed=3)
_OPERATORS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
              ast.Div: lambda a, b: a / b}


def _evaluate(text: str) -> tuple[Fraction, list[int], int]:
    """(exact value, numbers used, number of operations); asserts every intermediate is a positive integer."""
    numbers: list[int] = []
    operations = 0

    def value(node: ast.expr) -> Fraction:
        nonlocal operations
        if isinstance(node, ast.Constant) and type(node.value) is int:
            numbers.append(node.value)
            return Fraction(node.value)
        assert isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS, ast.dump(node)
        operations += 1
        result = _OPERATORS[type(node.op)](value(node.left), value(node.right))
        assert result > 0 and result.denominator == 1, f"{text}: intermediate {result}"
        return result

    return value(ast.parse(text, mode="eval").body), numbers, operations


def _split(completion: str) -> tuple[list[str], str]:
    thinking, rest = completion.split("</think>\n<answer>")
    answer, end = rest.split("</answer>")
    assert end == EOS
    return thinking.split(synthetic.ATTEMPT_SEPARATOR), answer


@pytest.mark.parametrize("style", synthetic.STYLES)
def test_traces_are_well_formed_and_scored_by_their_answer(style):
    _, train = countdown.generate_splits(CONFIG)
    pairs = synthetic.countdown_corpus(train, traces_per_example=2, seed=1, max_attempts=4, style=style)
    hits = 0
    for (prompt, completion), example in zip(pairs, train + train):
        nums, target = example["nums"], example["target"]
        assert prompt.endswith("<think>") and f"Target: {target}." in prompt
        attempts, answer = _split(completion)
        assert 1 <= len(attempts) <= 4
        expressions = []
        for attempt in attempts:
            expression, *steps = attempt.split("=")
            value, used, operations = _evaluate(expression)
            assert sorted(used) == sorted(nums), attempt
            assert steps[-1] == str(value), attempt
            # 'chain' reduces one operation per step; every step keeps the value.
            assert len(steps) == (operations if style == "chain" else 1), attempt
            assert all(_evaluate(step)[0] == value for step in steps), attempt
            expressions.append(expression)
        assert answer == expressions[-1] and len(set(expressions)) == len(expressions)
        hit = _evaluate(answer)[0] == target
        hits += hit
        assert countdown_reward.score(completion, nums, target) == (1.0 if hit else 0.1)
    assert 0 < hits < len(pairs)  # both branches of the 'iff' are exercised


def test_bounded_attempts_keep_every_intermediate_value_under_the_bound():
    _, train = countdown.generate_splits(CONFIG)
    operations = 0
    for _, completion in synthetic.countdown_corpus(train, seed=2, style="chain", max_value=30):
        for attempt in _split(completion)[0]:
            tree = ast.parse(attempt.split("=")[0], mode="eval")
            for node in ast.walk(tree):
                if isinstance(node, ast.BinOp):
                    operations += 1
                    assert _evaluate(ast.unparse(node))[0] <= 30, attempt
    assert operations > 500


def test_arithmetic_facts_are_correct_bounded_and_cover_every_operator():
    facts = synthetic.arithmetic_facts(4000, max_number=12, max_value=60, seed=1)
    counts = {op: 0 for op in "+-*/"}
    for prompt, completion in facts:
        assert prompt.endswith("=")
        value, (left, right), operations = _evaluate(prompt[:-1])
        assert operations == 1 and str(value) == completion
        assert 0 < value <= 60 and min(left, right) <= 12
        counts[next(op for op in "+-*/" if op in prompt)] += 1
    assert all(800 <= count <= 1200 for count in counts.values()), counts  # uniform over operators
    assert facts == synthetic.arithmetic_facts(4000, max_number=12, max_value=60, seed=1)
    assert facts != synthetic.arithmetic_facts(4000, max_number=12, max_value=60, seed=2)


def test_corpus_is_deterministic_in_seed():
    _, train = countdown.generate_splits(CONFIG)
    first = synthetic.countdown_corpus(train[:50], seed=5)
    assert first == synthetic.countdown_corpus(train[:50], seed=5)
    assert first != synthetic.countdown_corpus(train[:50], seed=6)


def test_attempt_counts_cover_the_range():
    example = countdown.CountdownExample(nums=[3, 5, 2], target=16, solution="(3 + 5) * 2")
    rng = random.Random(0)
    counts = {len(_split(synthetic.countdown_trace(rng, example, min_attempts=2, max_attempts=5))[0])
              for _ in range(200)}
    assert counts == {2, 3, 4, 5}


def test_render_and_chain_text():
    assert synthetic.render(("*", ("+", 12, 7), 3)) == "(12+7)*3"
    assert synthetic.render(("-", ("-", 20, 6), 13)) == "20-6-13"
    assert synthetic.render(("+", 5, ("-", 16, 12))) == "5+(16-12)"
    assert synthetic.render(("-", ("*", 5, 12), 7)) == "5*12-7"
    assert synthetic.attempt_text(("*", ("+", 12, 7), 3), "chain") == "(12+7)*3=19*3=57"
    assert synthetic.attempt_text(("*", ("+", 12, 7), 3), "inline") == "(12+7)*3=57"
    assert synthetic.attempt_text(("+", ("*", 2, 3), ("*", 4, 5)), "chain") == "2*3+4*5=6+4*5=6+20=26"


def test_rejects_bad_arguments():
    example = countdown.CountdownExample(nums=[3, 5], target=8, solution="3 + 5")
    with pytest.raises(ValueError, match="min_attempts"):
        synthetic.countdown_trace(random.Random(0), example, min_attempts=3, max_attempts=2)
    with pytest.raises(ValueError, match="style"):
        synthetic.countdown_trace(random.Random(0), example, style="prose")
