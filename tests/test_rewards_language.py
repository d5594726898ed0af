"""Language-consistency reward: script share of the chain of thought."""
import pytest

from r1jax.rewards import language


def think(text: str) -> str:
    return f"<think>{text}</think><answer>1</answer>"


@pytest.mark.parametrize(
    "text, target, expected",
    [
        ("Let us add the numbers.", "en", 1.0),
        ("Let us add the numbers.", "zh", 0.0),
        ("我们把数字加起来", "zh", 1.0),
        ("我们把数字加起来", "en", 0.0),
        ("first 我们 then 加", "en", 2 / 5),  # 2 English words, 3 Han characters
        ("first 我们 then 加", "zh", 3 / 5),
        ("So $\\frac{a}{b} = x$ holds", "en", 1.0),  # math counts for no language
        ("计算 \\frac{1}{2} + \\sqrt{2}", "zh", 1.0),  # LaTeX commands are not English words
        ("naïve café résumé", "fr", 1.0),
        ("Это просто", "ru", 1.0),
        ("Это просто and simple", "ru", 2 / 4),
        ("これは数学です", "ja", 1.0),
        ("이것은 수학 입니다", "ko", 1.0),
        ("中文推理 $$x + y$$", "zh", 1.0),  # display math too, in every notation
        ("中文推理 \\[x + y\\] and \\(z\\)", "zh", 4 / 5),
        ("中文 $a$ 推理 $$b$$ c$", "zh", 4 / 5),  # an unclosed "$" opens nothing
        ("ภาษาไทย ทำงาน", "th", 1.0),  # the vowels SARA AA and SARA AM are letters
        ("人々は", "ja", 1.0),  # the iteration mark
        ("नमस्ते दुनिया hello world", "hi", 2 / 4),  # vowel signs and the virama are inside their word
        ("नमस्ते दुनिया hello world", "en", 2 / 4),
        ("مَرْحَبًا بِكُمْ hello world", "ar", 2 / 4),  # vowel points too
        ("שָׁלוֹם hello", "he", 1 / 2),
        ("cafe\u0301 ol\u00e9 hello", "fr", 1.0),  # a decomposed accent stays in its word
        ("1 + 2 = 3", "en", 0.0),  # nothing to judge
        ("", "en", 0.0),
    ],
)
def test_script_share(text: str, target: str, expected: float) -> None:
    assert language.script_share(text, target) == pytest.approx(expected)


def test_consistency_reads_only_the_think_block() -> None:
    completion = "<think>All in English here.</think><answer>答案是三</answer>"
    assert language.consistency(completion, language="en") == 1.0
    assert language.consistency("no think block at all", language="en") == 0.0
    assert language.consistency("English thoughts</think><answer>1</answer>", prefill="<think>") == 1.0
    assert language.consistency("<think>thinking until the budget ran out", language="en") == 1.0


def test_unknown_language() -> None:
    with pytest.raises(ValueError, match="unknown language"):
        language.consistency(think("hello"), language="klingon")


def test_only_the_first_max_chars_characters_are_read() -> None:
    han = "试" * (language.MAX_CHARS - 12)
    # " word word w" fills the first MAX_CHARS characters: two words and a one-letter one; the rest is unread.
    text = han + " word word word" + " word" * 1000
    assert language.script_share(text, "en") == pytest.approx(3 / (len(han) + 3))
    assert language.script_share(text, "zh") == pytest.approx(len(han) / (len(han) + 3))


def test_unclosed_math_openings_are_read_in_linear_time() -> None:
    for text in ("\\[ a " * 50_000, "$$ a " * 50_000, "\\( " * 100_000 + "$x$"):
        assert language.script_share(text, "en") == pytest.approx(1.0 if "a" in text else 0.0)
