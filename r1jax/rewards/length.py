"""Length shaping: DAPO's soft overlong penalty, cosine length scaling, n-gram repetition penalty.

Lengths are whatever unit the trainer counts, normally generated tokens.
"""
from __future__ import annotations

import math

# The repetition penalty reads this many characters at most: more than any generation budget, and
# a bound on the cost of adversarial megabyte inputs.
REPETITION_MAX_CHARS = 1_000_000


def overlong_penalty(length: int, *, max_length: int, cache_length: int) -> float:
    """DAPO soft overlong punishment (Yu et al., 2025).

    0 up to `max_length - cache_length`, then falling linearly to -1 at `max_length`, -1 beyond.
    """
    if not 0 < cache_length <= max_length:
        raise ValueError(f"need 0 < cache_length <= max_length, got {cache_length=} {max_length=}")
    safe_length = max_length - cache_length
    if length <= safe_length:
        return 0.0
    if length <= max_length:
        return (safe_length - length) / cache_length
    return -1.0


def cosine_scaled(
    length: int,
    accuracy: float | None,
    *,
    max_length: int,
    correct_threshold: float = 1.0,
    correct_at_zero: float = 1.0,
    correct_at_max: float = 0.5,
    wrong_at_zero: float = -1.0,
    wrong_at_max: float = -0.5,
    exceed_score: float = -1.0,
) -> float | None:
    """Cosine length-scaled correctness reward ("Demystifying Long Chain-of-Thought Reasoning", Yeo et al., 2025).

    `accuracy` is the score of an accuracy reward; it counts as correct when >= `correct_threshold`.
    The reward moves along half a cosine from its value at length 0 to its value at `max_length`:
    with the defaults, short correct answers earn most and short wrong answers lose most, so the
    model is pushed to be brief when right and to keep thinking when wrong. Beyond `max_length` it is
    `exceed_score`. None if `accuracy` is None (an unscorable example stays unscorable).
    """
    if max_length <= 0:
        raise ValueError(f"cosine_scaled: max_length={max_length} must be positive")
    if accuracy is None:
        return None
    if length > max_length:
        return exceed_score
    if accuracy >= correct_threshold:
        at_zero, at_max = correct_at_zero, correct_at_max
    else:
        at_zero, at_max = wrong_at_zero, wrong_at_max
    return at_max + 0.5 * (at_zero - at_max) * (1.0 + math.cos(math.pi * length / max_length))


def repetition_penalty(completion: str, *, ngram_size: int = 3, max_penalty: float = -1.0) -> float:
    """N-gram repetition penalty: `max_penalty` times the share of repeated word n-grams (all but the first
    occurrence of each).

    Words are whitespace-separated, so text in scripts without spaces is not penalised. 0 for texts
    shorter than one n-gram or of one n-gram; one n-gram repeated throughout approaches `max_penalty`
    as it gets longer (`(1 - 1/n)` of it for n n-grams). Reads the first
    REPETITION_MAX_CHARS characters.
    """
    if ngram_size < 1 or max_penalty > 0:
        raise ValueError(f"need ngram_size >= 1 and max_penalty <= 0, got {ngram_size=} {max_penalty=}")
    words = completion[:REPETITION_MAX_CHARS].split()
    total = len(words) - ngram_size + 1
    if total <= 0:
        return 0.0
    distinct = len(set(zip(*(words[offset:] for offset in range(ngram_size)), strict=False)))
    return max_penalty * (1.0 - distinct / total)
