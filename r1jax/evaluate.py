"""Evaluation metrics for sampled reasoning: pass@k, majority vote (cons@k), best-of-N.

Everything here is plain Python/numpy over per-question lists of `(completion text, score)` pairs, so
it runs and is tested without a model. `score` is the accuracy reward of the completion (e.g.
`r1jax.rewards.math.score` or `r1jax.rewards.countdown.score`); a sample is correct when
`score >= CORRECT_SCORE` (both rewards pay 1.0 for a right answer, and Countdown's 0.1 format score is
not a right answer). A None score (a gold answer the checker cannot read) counts as not correct.

The DeepSeek-R1 report's protocol: sample k completions per question at `R1_EVAL_TEMPERATURE` and
`R1_EVAL_TOP_P` and report pass@1 as the mean correctness over the k samples (`mean_pass_at_1`),
and cons@k as the correctness of the majority-voted answer (`cons_at_k`).

Same answer (what votes together), per task (`AnswerRule`):
* math (`MATH_ANSWERS`): `r1jax.rewards.math.extract_answer`, and two answers are the same when the
  math checker accepts one against the other as gold (`same_math_answer`): "0.5", "1/2" and
  "\\frac12" vote together.
* Countdown (`COUNTDOWN_ANSWERS`): the answer is the equation in `<answer>`; every correct equation
  has the target's value, so voting by value would merge right answers with ones that use the wrong
  numbers. Equations vote together only when they are the same string up to whitespace
  (`same_countdown_equation`); "1+2" and "2+1" split the vote.

Ties are broken by sample order, so results are deterministic: a vote tie goes to the answer written
first, a best-of-N tie to the earliest sample.
"""
from __future__ import annotations

import math as _math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from r1jax.rewards import countdown
from r1jax.rewards import math as math_reward

R1_EVAL_TEMPERATURE = 0.6
R1_EVAL_TOP_P = 0.95
CORRECT_SCORE = 1.0

ScoredSample = tuple[str, float | None]  # (completion text, accuracy score)


# ---------------------------------------------------------------------------------------------
# pass@k


def _pass_at_k_one(n: int, c: int, k: int) -> float:
    if c == 0:
        return 0.0
    if n - c < k:  # fewer than k wrong samples: every k-subset holds a correct one
        return 1.0
    # Chen et al.'s product form 1 - prod_{i=n-c+1}^{n} (1 - k/i), summed in log space (log1p, expm1):
    # no huge binomials, no underflow, and small values keep their relative precision.
    return float(-np.expm1(np.sum(np.log1p(-k / np.arange(n - c + 1, n + 1, dtype=np.float64)))))


def pass_at_k_array(num_samples: npt.ArrayLike, num_correct: npt.ArrayLike, k: int) -> np.ndarray:
    """Unbiased pass@k (Chen et al. 2021) per question: `1 - C(n - c, k) / C(n, k)`, float64, broadcast over n, c."""
    n = np.asarray(num_samples)
    c = np.asarray(num_correct)
    if not (np.issubdtype(n.dtype, np.integer) and np.issubdtype(c.dtype, np.integer)):
        raise TypeError(f"num_samples and num_correct must be integers, got {n.dtype} and {c.dtype}")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k={k!r} must be a positive integer")
    n, c = np.broadcast_arrays(n, c)
    if np.any(k > n):
        raise ValueError(f"k={k} exceeds the number of samples n={int(n.min())}; pass@k needs k <= n")
    if np.any((c < 0) | (c > n)):
        raise ValueError("num_correct must be in [0, num_samples] for every question")
    values = [_pass_at_k_one(int(a), int(b), int(k)) for a, b in zip(n.ravel(), c.ravel())]
    return np.array(values, dtype=np.float64).reshape(n.shape)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct."""
    for name, value in (("n", n), ("c", c)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{name}={value!r} must be an integer")
    return float(pass_at_k_array(n, c, k))


# ---------------------------------------------------------------------------------------------
# Majority vote


def same_math_answer(answer: str, representative: str) -> bool:
    """Whether the math checker accepts `answer` against `representative` as the gold answer.

    Answers the checker cannot read only match themselves exactly.
    """
    return answer == representative or math_reward.equivalent(answer, representative) is True


def same_countdown_equation(equation: str, representative: str) -> bool:
    """The same equation up to whitespace ("(1 + 2) * 3" and "(1+2)*3")."""
    return "".join(equation.split()) == "".join(representative.split())


class AnswerRule(NamedTuple):
    """How a task reads the final answer of a completion and which answers vote together."""

    extract: Callable[[str], str | None]
    same: Callable[[str, str], bool]


MATH_ANSWERS = AnswerRule(math_reward.extract_answer, same_math_answer)
COUNTDOWN_ANSWERS = AnswerRule(countdown.extract_equation, same_countdown_equation)


def _vote(answers: Sequence[str | None], same: Callable[[str, str], bool]) -> tuple[int, int]:
    """(index of the winning cluster's first answer, its votes); (-1, 0) when no answer is readable."""
    # Each cluster is (index of its first answer, votes); a new answer joins the first cluster whose
    # first answer it matches, so the result depends only on the order of the answers.
    clusters: list[list[int]] = []
    for index, answer in enumerate(answers):
        if not answer:  # None or "" (an empty answer block) is unreadable: no vote
            continue
        for cluster in clusters:
            if same(answer, answers[cluster[0]]):
                cluster[1] += 1
                break
        else:
            clusters.append([index, 1])
    if not clusters:
        return -1, 0
    # max() keeps the first maximum: ties go to the answer that appeared first.
    first_index, votes = max(clusters, key=lambda cluster: cluster[1])
    return first_index, votes


def majority_vote(answers: Sequence[str | None],
                  same_answer: Callable[[str, str], bool] = same_math_answer) -> tuple[str | None, int]:
    """The most voted answer (as first written) and its votes; `(None, 0)` when none is readable.

    Unreadable answers (None or "") never vote, so they win only when no answer is readable.
    `same_answer(answer, representative)` groups answers (default: math equivalence, see
    `same_math_answer`); an answer joins the earliest group whose first answer it matches.
    Ties go to the group whose first answer appeared earliest.
    """
    first_index, votes = _vote(answers, same_answer)
    return (None, 0) if first_index < 0 else (answers[first_index], votes)


# ---------------------------------------------------------------------------------------------
# Per-question metrics


def is_correct(score: float | None, correct_score: float = CORRECT_SCORE) -> bool:
    return score is not None and score >= correct_score


def _require_samples(samples: Sequence[ScoredSample]) -> None:
    if len(samples) == 0:
        raise ValueError("a question needs at least one sample")


def mean_pass_at_1(samples: Sequence[ScoredSample], *, correct_score: float = CORRECT_SCORE) -> float:
    """The R1 report's pass@1 for one question: the fraction of its k samples that are correct."""
    _require_samples(samples)
    return sum(is_correct(score, correct_score) for _, score in samples) / len(samples)


def cons_at_k(samples: Sequence[ScoredSample], rule: AnswerRule = MATH_ANSWERS, *,
              correct_score: float = CORRECT_SCORE) -> float:
    """1.0 if the majority-voted answer of the samples (k = all of them) is correct, else 0.0.

    The voted answer is judged by the score of the first sample that wrote it (answers that vote
    together are the same answer). No readable answer scores 0.
    """
    _require_samples(samples)
    first_index, _ = _vote([rule.extract(completion) for completion, _ in samples], rule.same)
    return float(first_index >= 0 and is_correct(samples[first_index][1], correct_score))


def best_of_n_index(ranking_scores: Sequence[float | None]) -> int:
    """Index of the best-ranked sample; ties go to the earliest, None and NaN rank below every number."""
    if len(ranking_scores) == 0:
        raise ValueError("best-of-N needs at least one candidate")

    def rank(index: int) -> tuple[bool, float, int]:
        score = ranking_scores[index]
        usable = score is not None and not _math.isnan(score)
        return usable, score if usable else 0.0, -index

    return max(range(len(ranking_scores)), key=rank)


def best_of_n(samples: Sequence[ScoredSample], rank_by: Callable[[str], float | None], *,
              correct_score: float = CORRECT_SCORE) -> float:
    """1.0 if the sample `rank_by` (a verifier or reward over the completion text) ranks best is correct.

    With `rank_by` the accuracy reward itself (an oracle verifier), this is pass@N.
    """
    _require_samples(samples)
    chosen = best_of_n_index([rank_by(completion) for completion, _ in samples])
    return float(is_correct(samples[chosen][1], correct_score))
