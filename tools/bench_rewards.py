"""Benchmark the rule-based rewards: scores per second per core on synthetic completions.

Completions mimic a GRPO batch: prompts sampled `--group-size` times, with a think block of
50-800 words and a mix of correct answers (in the gold's spelling or another equivalent one),
wrong answers, malformed answers and missing answers. Each reward runs in this one process, so
completions per CPU-second is the rate of one core; wall-clock rates are shown next to it because
the machine may be shared.

    python tools/bench_rewards.py [--n 10000] [--group-size 8] [--seed 0] [--workers 0]

`--workers N` additionally times `RewardSet.score_batch` (math + strict format) with N processes.
`--code-programs N` times the sandboxed code reward on N small programs (0 skips it).
"""
from __future__ import annotations

import argparse
import collections
import functools
import os
import random
import resource
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

from r1jax.rewards import RewardSet, code, countdown
from r1jax.rewards import format as format_reward
from r1jax.rewards import math as math_reward

WORDS = (
    "so we need to find the value first let us check whether this works the sum is then multiply "
    "divide subtract add maybe try again wait that is not right because we used each number once "
    "hence it follows that the result equals"
).split()

Case = tuple[str, dict[str, Any]]  # (completion, example fields)


def reasoning(rng: random.Random) -> str:
    words = [rng.choice(WORDS) if rng.random() < 0.9 else str(rng.randint(0, 999)) for _ in range(rng.randint(50, 800))]
    return " ".join(words)


def r1_completion(rng: random.Random, answer: str) -> str:
    return f"<think>\n{reasoning(rng)}\n</think>\n<answer>\n{answer}\n</answer>"


# --------------------------------------------------------------------------- countdown


def _countdown_puzzle(rng: random.Random) -> tuple[list[int], str, int]:
    """Numbers, an equation using each once, and its (positive integer) value."""
    while True:
        nums = [rng.randint(1, 99) for _ in range(rng.choice((3, 4)))]
        text = str(nums[0])
        for number in nums[1:]:
            op = rng.choice("+-*/")
            text = f"({text} {op} {number})" if rng.random() < 0.5 else f"{text} {op} {number}"
        value = countdown.evaluate_equation(text)
        if value is not None and value.denominator == 1 and 0 < value < 1000:
            return nums, text, value.numerator


def countdown_cases(rng: random.Random, prompts: int, group_size: int) -> list[Case]:
    cases = []
    for _ in range(prompts):
        nums, equation, target = _countdown_puzzle(rng)
        example = {"nums": nums, "target": target}
        for _ in range(group_size):
            kind = rng.random()
            if kind < 0.4:
                completion = r1_completion(rng, equation)
            elif kind < 0.65:
                completion = r1_completion(rng, " + ".join(map(str, rng.sample(nums, len(nums)))))
            elif kind < 0.85:
                malformed = rng.choice([
                    equation.replace("*", "**", 1), equation.replace("1", "１"), f"{equation} = {target}",
                    f"{equation} * 1", "", f"{nums[0]}({nums[1]})",
                ])
                completion = r1_completion(rng, malformed)
            else:
                completion = f"<think>\n{reasoning(rng)}\n</think>\nI could not find it."
            cases.append((completion, example))
    return cases


# --------------------------------------------------------------------------- math


def _math_problem(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """A gold answer, equivalent spellings of it, and wrong answers."""
    a = rng.randint(2, 30)
    b = a + rng.randint(1, 20)
    kind = rng.randrange(9)
    if kind == 0:
        n = rng.randint(-5000, 99999)
        return str(n), [str(n), f"{n:,}", f"{n}.0"], [str(n + 1), str(-n)]
    if kind == 1:
        value = Fraction(a, b)
        p, q = value.numerator, value.denominator
        spellings = [f"\\frac{{{p}}}{{{q}}}", f"{p}/{q}", f"\\dfrac{{{2 * p}}}{{{2 * q}}}"]
        return f"\\frac{{{p}}}{{{q}}}", spellings, [f"\\frac{{{q}}}{{{p + 1}}}", f"{float(value):.2f}1"]
    if kind == 2:
        return f"{a}\\sqrt{{{b}}}", [f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"], [f"{a + 1}\\sqrt{{{b}}}", f"{a}"]
    if kind == 3:
        gold = f"\\frac{{{a}\\pi}}{{{b}}}"
        return gold, [f"\\frac{{{a}}}{{{b}}}\\pi", f"{a}pi/{b}"], [f"\\frac{{{b}\\pi}}{{{a}}}", "\\pi"]
    if kind == 4:
        low, high = a, b + 31
        correct = [f"[{low},{high})", f"{low} \\le x < {high}"]
        return f"[{low}, {high})", correct, [f"({low}, {high})", f"[{low},{high}]"]
    if kind == 5:
        return f"({a}, {b})", [f"\\left( {a}, {b} \\right)", f"({a},{b})"], [f"({b + 1}, {a})", f"{a}, {b}"]
    if kind == 6:
        return f"x^2 + {a + b}x + {a * b}", [f"(x + {a})(x + {b})", f"x^2+{a + b}x+{a * b}"], [f"(x + {a})(x - {b})"]
    if kind == 7:
        return f"{a}\\%", [f"{a}\\%", f"{Fraction(a, 100)}", f"{a}"], [f"{a + 1}\\%"]
    letter = rng.choice("ABCDE")
    return f"\\text{{({letter})}}", [letter, f"({letter})", f"\\textbf{{({letter})}}"], ["(F)"]


def math_cases(rng: random.Random, prompts: int, group_size: int) -> list[Case]:
    cases = []
    for _ in range(prompts):
        gold, correct, wrong = _math_problem(rng)
        example = {"answer": gold}
        for _ in range(group_size):
            kind = rng.random()
            if kind < 0.45:
                answer = rng.choice(correct)
            elif kind < 0.75:
                answer = rng.choice(wrong)
            else:
                answer = None
            if answer is None:  # malformed or missing
                completion = rng.choice([
                    r1_completion(rng, "\\boxed{" + rng.choice(correct)), r1_completion(rng, ""),
                    r1_completion(rng, "\\frac{1}{"), r1_completion(rng, "３"),
                    f"<think>\n{reasoning(rng)}",
                ])
            elif rng.random() < 0.6:
                completion = r1_completion(rng, f"\\boxed{{{answer}}}")
            elif rng.random() < 0.5:
                completion = f"{reasoning(rng)}\nThe final answer is ${answer}$."
            else:
                completion = f"{reasoning(rng)} so the result is $\\boxed{{{answer}}}$"
            cases.append((completion, example))
    return cases


# --------------------------------------------------------------------------- format


def format_cases(rng: random.Random, prompts: int, group_size: int) -> list[Case]:
    layouts: list[Callable[[str], str]] = [
        lambda think: f"<think>\n{think}\n</think>\n<answer>\n42\n</answer>",
        lambda think: f"<think>\n{think}\n</think>\n<answer>\n42\n</answer>\nAnything else?",
        lambda think: f"<think>{think}</think><answer>42</answer>",
        lambda think: f"{think}\n</think>\n<answer>\n42\n</answer>",
        lambda think: f"<think>\n{think}",
        lambda think: f"{think} The answer is 42.",
    ]
    return [(rng.choice(layouts)(reasoning(rng)), {}) for _ in range(prompts * group_size)]


# --------------------------------------------------------------------------- timing

REWARDS: dict[str, tuple[Callable[..., list[Case]], Callable[..., float | None]]] = {
    "countdown": (countdown_cases, lambda completion, example: countdown.score(completion, **example)),
    "math": (math_cases, lambda completion, example: math_reward.score(completion, **example)),
    "format_strict": (format_cases, lambda completion, _: format_reward.strict(completion)),
    "format_tags": (format_cases, lambda completion, _: format_reward.tag_count(completion)),
}


def timed(run: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, time.perf_counter() - wall, time.process_time() - cpu


# A small correct program with two test cases, per kind of test case.
CODE_PROGRAMS = {
    "stdin/stdout": ("```python\na, b = map(int, input().split())\nprint(a + b)\n```",
                     [{"input": "1 2\n", "output": "3\n"}, {"input": "40 2\n", "output": "42\n"}]),
    "function call": ("```python\nclass Solution:\n    def add(self, a: int, b: int) -> int:\n        return a + b\n```",
                      [{"function": "add", "args": [1, 2], "output": 3}, {"function": "add", "args": [40, 2], "output": 42}]),
}


def bench_code_reward(n_programs: int, kind: str = "stdin/stdout", *,
                      max_workers: int | None = None) -> dict[str, float | str]:
    """Throughput of `evaluate_batch` on `CODE_PROGRAMS[kind]`.

    `programs_per_cpu_s` counts the CPU time of this process and of every sandbox process (the rate
    of one core); `programs_per_s` is wall clock, which depends on what else the machine runs.
    """
    completion, tests = CODE_PROGRAMS[kind]
    isolation = code.sandbox_isolation()  # not part of the timing

    def cpu_seconds() -> float:
        usages = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
        return sum(usage.ru_utime + usage.ru_stime for usage in usages)

    start, start_cpu = time.perf_counter(), cpu_seconds()
    scores = code.run_tests_batch([(completion, tests)] * n_programs, max_workers=max_workers)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    return {
        "kind": kind,
        "programs": n_programs,
        "max_workers": max_workers or os.cpu_count(),
        "seconds": seconds,
        "programs_per_s": n_programs / seconds,
        "programs_per_cpu_s": n_programs / cpu,
        "mean_score": sum(scores) / n_programs,
        "isolation": str(isolation),
    }


def score_all(score: Callable[..., float | None], cases: Sequence[Case]) -> list[float | None]:
    return [score(completion, example) for completion, example in cases]


def outcome_summary(scores: Sequence[float | None]) -> str:
    counts = collections.Counter("None" if s is None else f"{s:g}" for s in scores)
    return ", ".join(f"{value}: {count}" for value, count in sorted(counts.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000, help="completions per reward")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="also time a RewardSet with this many processes")
    parser.add_argument("--code-programs", type=int, default=200, help="programs for the code reward (0: skip)")
    args = parser.parse_args()
    prompts = max(1, args.n // args.group_size)

    header = ("reward", "completions", "mean chars", "cpu s", "scores/s/core", "wall scores/s")
    print("{:<14} {:>11} {:>10} {:>7} {:>14} {:>14}  outcomes".format(*header))
    for name, (generate, score) in REWARDS.items():
        cases = generate(random.Random(args.seed), prompts, args.group_size)
        mean_chars = sum(len(completion) for completion, _ in cases) / len(cases)
        scores, wall, cpu = timed(functools.partial(score_all, score, cases))
        print(f"{name:<14} {len(cases):>11} {mean_chars:>10.0f} {cpu:>7.2f} {len(cases) / cpu:>14,.0f} "
              f"{len(cases) / wall:>14,.0f}  {outcome_summary(scores)}")

    if args.workers:
        # Another seed, so the serial run does not start with the golds parsed above already cached.
        cases = math_cases(random.Random(args.seed + 1), prompts, args.group_size)
        completions, examples = [c for c, _ in cases], [e for _, e in cases]
        config: list[dict[str, Any]] = [{"name": "math"}, {"name": "format_strict", "weight": 0.1}]
        for workers in (0, args.workers):
            with RewardSet(config, num_workers=workers) as rewards:
                rewards.score_batch(completions[:64], examples[:64])  # start the workers
                _, wall, _ = timed(functools.partial(rewards.score_batch, completions, examples))
            print(f"RewardSet(math + format_strict), {workers} workers: {len(cases) / wall:,.0f} completions/s (wall)")

    if args.code_programs:
        for kind in CODE_PROGRAMS:
            print(f"code reward (sandboxed): {bench_code_reward(args.code_programs, kind)}")


if __name__ == "__main__":
    main()
