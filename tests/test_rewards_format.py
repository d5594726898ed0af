"""Format rewards and the shared tag helpers."""
import pytest

from r1jax.rewards import format as format_reward

GOOD = "<think>\nreasoning\n</think>\n<answer>\n42\n</answer>"

STRICT = [
    pytest.param(GOOD, "", 1.0, id="exact"),
    pytest.param(GOOD + "\n", "", 1.0, id="trailing-newline"),
    pytest.param("<think>\nline 1\nline 2\n</think>\n<answer>\na\nb\n</answer>", "", 1.0, id="multi-line-blocks"),
    pytest.param(GOOD + " and more", "", 0.0, id="text-after-answer"),
    pytest.param("Sure! " + GOOD, "", 0.0, id="text-before-think"),
    pytest.param("<think>reasoning</think><answer>42</answer>", "", 0.0, id="missing-newlines"),
    pytest.param("<think>\nreasoning\n</think>\n<answer>\n\n</answer>", "", 0.0, id="blank-answer"),
    pytest.param("<think>\n \n</think>\n<answer>\n42\n</answer>", "", 0.0, id="blank-think"),
    pytest.param(GOOD + "\n<answer>\n43\n</answer>", "", 0.0, id="two-answers"),
    pytest.param("<think>\na\n</think>\n<think>\nb\n</think>\n<answer>\n42\n</answer>", "", 0.0, id="two-thinks"),
    pytest.param("<answer>\n42\n</answer>", "", 0.0, id="no-think"),
    pytest.param("<think>\nreasoning\n</think>", "", 0.0, id="no-answer"),
    pytest.param("reasoning\n</think>\n<answer>\n42\n</answer>", "<think>\n", 1.0, id="prefilled-think-newline"),
    pytest.param("\nreasoning\n</think>\n<answer>\n42\n</answer>", "<think>", 1.0, id="prefilled-think"),
    pytest.param(GOOD, "<think>\n", 0.0, id="prefilled-then-repeated"),
    pytest.param("reasoning\n</think>\n<answer>\n42\n</answer>", "", 0.0, id="needs-prefill"),
]


@pytest.mark.parametrize("completion, prefill, expected", STRICT)
def test_strict(completion: str, prefill: str, expected: float) -> None:
    assert format_reward.strict(completion, prefill=prefill) == expected


@pytest.mark.parametrize(
    "completion, prefill, expected",
    [
        (GOOD, "", 1.0),
        ("<think>reasoning</think><answer>42</answer> trailing", "", 1.0),
        ("<think>reasoning</think>", "", 0.5),
        ("reasoning</think><answer>42</answer>", "<think>", 1.0),
        ("<think><think>x</think><answer>1</answer>", "", 0.75),
        ("", "", 0.0),
    ],
)
def test_tag_count(completion: str, prefill: str, expected: float) -> None:
    assert format_reward.tag_count(completion, prefill=prefill) == expected


def test_last_tag_content() -> None:
    assert format_reward.last_tag_content("<answer>1</answer><answer> 2 </answer>", "answer") == " 2 "
    assert format_reward.last_tag_content("<answer><answer>x</answer>", "answer") == "x"
    assert format_reward.last_tag_content("<answer>1</answer><answer>2", "answer") == "1"
    assert format_reward.last_tag_content("</answer><answer>", "answer") is None
    assert format_reward.last_tag_content("<answer></answer>", "answer") == ""
    assert format_reward.last_tag_content("<think>t</think>", "think") == "t"


def test_think_content() -> None:
    assert format_reward.think_content("<think>a</think><think>b</think>") == "a"
    assert format_reward.think_content("cut off <think>still thinking") == "still thinking"
    assert format_reward.think_content("a</think>b", prefill="<think>") == "a"
    assert format_reward.think_content("no tags") is None
