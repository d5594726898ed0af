"""Length shaping: overlong penalty, cosine scaling, repetition penalty."""
import pytest

from r1jax.rewards import length


@pytest.mark.parametrize(
    "tokens, expected",
    [(0, 0.0), (768, 0.0), (769, -1 / 256), (896, -0.5), (1024, -1.0), (1025, -1.0), (10**9, -1.0)],
)
def test_overlong_penalty(tokens: int, expected: float) -> None:
    assert length.overlong_penalty(tokens, max_length=1024, cache_length=256) == pytest.approx(expected)


def test_overlong_penalty_rejects_bad_window() -> None:
    with pytest.raises(ValueError):
        length.overlong_penalty(10, max_length=100, cache_length=0)
    with pytest.raises(ValueError):
        length.overlong_penalty(10, max_length=100, cache_length=200)


def test_cosine_endpoints_and_shape() -> None:
    score = lambda tokens, accuracy: length.cosine_scaled(tokens, accuracy, max_length=1000)  # noqa: E731
    assert score(0, 1.0) == pytest.approx(1.0)
    assert score(1000, 1.0) == pytest.approx(0.5)
    assert score(500, 1.0) == pytest.approx(0.75)
    assert score(0, 0.0) == pytest.approx(-1.0)
    assert score(1000, 0.0) == pytest.approx(-0.5)
    assert score(1001, 1.0) == -1.0
    assert score(10, None) is None
    correct = [score(t, 1.0) for t in range(0, 1001, 50)]
    wrong = [score(t, 0.0) for t in range(0, 1001, 50)]
    assert correct == sorted(correct, reverse=True)  # shorter is better when right
    assert wrong == sorted(wrong)  # longer is better when wrong


def test_cosine_threshold() -> None:
    # A countdown format score (0.1) is not a correct answer.
    assert length.cosine_scaled(0, 0.1, max_length=10) == pytest.approx(-1.0)
    assert length.cosine_scaled(0, 0.1, max_length=10, correct_threshold=0.1) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", 0.0),
        ("too short", 0.0),
        ("every word here is different from the rest", 0.0),
        ("a b c a b c", -1 / 4),  # 4 trigrams, 3 distinct
        ("go " * 100, -(1 - 1 / 98)),
    ],
)
def test_repetition_penalty(text: str, expected: float) -> None:
    assert length.repetition_penalty(text) == pytest.approx(expected)


def test_repetition_penalty_options() -> None:
    assert length.repetition_penalty("a a a a", ngram_size=1, max_penalty=-0.5) == pytest.approx(-0.5 * 3 / 4)
    with pytest.raises(ValueError):
        length.repetition_penalty("a", max_penalty=1.0)


def test_cosine_scaled_refuses_a_budget_without_length() -> None:
    with pytest.raises(ValueError, match="max_length=0 must be positive"):
        length.cosine_scaled(5, 1.0, max_length=0)
