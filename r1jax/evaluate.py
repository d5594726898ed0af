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
* code (`CODE_ANSWERS`): the program `r1jax.rewards.code.extract_code` reads; programs vote together
  when they are the same text up to blank lines and trailing spaces (`same_program`). For code, pass@k
  is the usual measure; a vote only counts how often the model wrote one program.

Ties are broken by sample order, so results are deterministic: a vote tie goes to the answer written
first, a best-of-N tie to the earliest sample.

Scaling curves (`best_of_n_at`, `majority_vote_at`, with `pass_at_k_array` for pass@k): from n samples
per question drawn once, the accuracy of each method with N <= n samples, averaged over N-subsets of
them (exactly for pass@k and best-of-N, over every or many random subsets for the vote), so a whole
curve costs one sampling pass.
"""
from __future__ import annotations

import itertools
import math as _math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from r1jax.rewards import code as code_reward
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


def same_program(program: str, representative: str) -> bool:
    """The same program up to blank lines and trailing whitespace."""
    def lines(text: str) -> list[str]:
        return [line.rstrip() for line in text.splitlines() if line.strip()]

    return lines(program) == lines(representative)


class AnswerRule(NamedTuple):
    """How a task reads the final answer of a completion and which answers vote together."""

    extract: Callable[[str], str | None]
    same: Callable[[str, str], bool]


MATH_ANSWERS = AnswerRule(math_reward.extract_answer, same_math_answer)
COUNTDOWN_ANSWERS = AnswerRule(countdown.extract_equation, same_countdown_equation)
CODE_ANSWERS = AnswerRule(code_reward.extract_code, same_program)


def answer_clusters(answers: Sequence[str | None], same: Callable[[str, str], bool]) -> list[int]:
    """The cluster of each answer: ids in order of first appearance, -1 for an unreadable one (None or "").

    An answer joins the first cluster whose first answer it matches, so the result depends only on
    the order of the answers.
    """
    firsts: list[int] = []  # index of each cluster's first answer
    ids = []
    for index, answer in enumerate(answers):
        if not answer:
            ids.append(-1)
            continue
        cluster = next((c for c, first in enumerate(firsts) if same(answer, answers[first])), len(firsts))
        if cluster == len(firsts):
            firsts.append(index)
        ids.append(cluster)
    return ids


def _vote(answers: Sequence[str | None], same: Callable[[str, str], bool]) -> tuple[int, int]:
    """(index of the winning cluster's first answer, its votes); (-1, 0) when no answer is readable."""
    ids = answer_clusters(answers, same)
    readable = [cluster for cluster in ids if cluster >= 0]
    if not readable:
        return -1, 0
    votes = np.bincount(readable)
    winner = int(np.argmax(votes))  # the first maximum: ties go to the answer that appeared first
    return ids.index(winner), int(votes[winner])


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


# ---------------------------------------------------------------------------------------------
# Scaling curves: every N up to n from one set of n samples per question
#
# Arrays hold Q questions x n samples, sample j of question q drawn j-th. The accuracy at N is the
# expectation over N-subsets of the samples drawn uniformly without replacement (each subset keeping
# the samples' order): an unbiased estimate of the accuracy with N fresh samples, from one sampling pass.


def sample_sizes(num_samples: int) -> list[int]:
    """N = 1, 2, 4, ... up to `num_samples`, and `num_samples` itself."""
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be >= 1")
    sizes = [1 << i for i in range(num_samples.bit_length()) if 1 << i <= num_samples]
    return sizes if sizes[-1] == num_samples else [*sizes, num_samples]


def _check_curve_inputs(correct_QxN: np.ndarray, other_QxN: np.ndarray, k: int) -> None:
    if correct_QxN.ndim != 2 or correct_QxN.shape != other_QxN.shape or correct_QxN.size == 0:
        raise ValueError(f"need two non-empty arrays of the same [questions, samples] shape, got "
                         f"{correct_QxN.shape} and {other_QxN.shape}")
    if not 1 <= k <= correct_QxN.shape[1]:
        raise ValueError(f"N={k} must be in [1, {correct_QxN.shape[1]}] (the samples per question)")


def best_of_n_at(correct_QxN: npt.ArrayLike, ranking_QxN: npt.ArrayLike, k: int) -> float:
    """Mean over questions of `best_of_n`'s correctness, averaged exactly over every k-subset of the samples.

    `ranking_QxN` ranks as `best_of_n_index` does (NaN below every number, ties to the earlier sample),
    which makes the ranking a total order: sample i is chosen by exactly the subsets that hold it and
    k - 1 of the r_i samples ranked below it, C(r_i, k - 1) of the C(n, k) subsets.
    """
    correct = np.asarray(correct_QxN, bool)
    ranking = np.asarray(ranking_QxN, np.float64)
    _check_curve_inputs(correct, ranking, k)
    n = correct.shape[1]
    usable = ~np.isnan(ranking)
    # lexsort's last key sorts first: ascending (usable, score, later index first), so the best is last.
    later_first = np.broadcast_to(-np.arange(n), ranking.shape)
    order_QxN = np.lexsort((later_first, np.where(usable, ranking, 0.0), usable), axis=-1)
    rank_QxN = np.empty_like(order_QxN)
    np.put_along_axis(rank_QxN, order_QxN, np.arange(n), axis=-1)  # samples ranked below each one
    chosen_R = np.array([_math.comb(r, k - 1) / _math.comb(n, k) for r in range(n)])
    return float(np.mean(np.sum(correct * chosen_R[rank_QxN], axis=-1)))


def _subsets(n: int, k: int, num_subsets: int, rng: np.random.Generator) -> np.ndarray:
    """`subsets_RxK`: every k-subset of range(n) if there are at most `num_subsets`, else that many random ones."""
    if _math.comb(n, k) <= num_subsets:
        return np.array(list(itertools.combinations(range(n), k)), np.int64).reshape(-1, k)
    return np.sort(np.argsort(rng.random((num_subsets, n)), axis=-1)[:, :k], axis=-1)


def majority_vote_at(correct_QxN: npt.ArrayLike, clusters_QxN: npt.ArrayLike, k: int, *, num_subsets: int = 1000,
                     seed: int = 0) -> float:
    """Mean over questions of `cons_at_k`'s correctness on k-subsets of the samples.

    `clusters_QxN` are the answers' `answer_clusters` over all n samples (-1: unreadable). The vote of a
    subset is `cons_at_k`'s: most votes, ties to the cluster that appears first, judged by the
    correctness of that cluster's first sample in the subset; no readable answer scores 0. Exact (every
    subset) when C(n, k) <= `num_subsets`, else the mean over `num_subsets` uniformly random subsets,
    shared by all questions: unbiased either way. For a rule whose `same` is transitive (Countdown's),
    clusters of a subset are those of the whole set, so this is `cons_at_k` on every subset.
    """
    correct = np.asarray(correct_QxN, bool)
    clusters = np.asarray(clusters_QxN, np.int64)
    _check_curve_inputs(correct, clusters, k)
    subsets_RxK = _subsets(correct.shape[1], k, num_subsets, np.random.default_rng(seed))
    num_rows = len(subsets_RxK)
    positions_RxK = np.broadcast_to(np.arange(k), subsets_RxK.shape)
    scores = []
    for correct_N, clusters_N in zip(correct, clusters):
        width = int(clusters_N.max()) + 1
        if width == 0:  # no readable answer at all
            scores.append(0.0)
            continue
        ids_RxK = clusters_N[subsets_RxK]
        readable = ids_RxK >= 0
        # (row, cluster) pairs in row-major order: np.unique's first index is each pair's first position.
        pairs, first, votes = np.unique((np.arange(num_rows)[:, None] * width + ids_RxK)[readable],
                                        return_index=True, return_counts=True)
        rows, first_position = pairs // width, positions_RxK[readable][first]
        # Per row the winner: most votes, then the earliest first position.
        order = np.lexsort((first_position, -votes, rows))
        winners = order[np.r_[True, rows[order][1:] != rows[order][:-1]]]
        chosen = subsets_RxK[rows[winners], first_position[winners]]
        scores.append(correct_N[chosen].sum() / num_rows)  # rows without a readable answer add 0
    return float(np.mean(scores))
