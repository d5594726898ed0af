"""Format rewards for the R1 layout `<think>\\n...\\n</think>\\n<answer>\\n...\\n</answer>`.

Also home of the tag helpers the other rewards share (`last_tag_content`, `think_content`),
so every reward reads the answer and the chain of thought the same way.

Many chat templates prefill the assistant turn with `<think>` (or `<think>\\n`); the model's
completion then starts inside the think block. Every function here takes `prefill`, the text the
prompt already ended with, and judges `prefill + completion`.
"""
from __future__ import annotations

import re

ANSWER_TAG = "answer"
THINK_CLOSE = "</think>"
_LAYOUT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")

# One think block, one answer block, each on its own lines; only whitespace may follow.
_STRICT_LAYOUT = re.compile(
    r"<think>\n(?P<think>.*?)\n</think>\n<answer>\n(?P<answer>.*?)\n</answer>\s*", re.DOTALL
)


def last_tag_content(text: str, tag: str) -> str | None:
    """Content of the last complete `<tag>...</tag>` block, unstripped; None if there is none.

    Pairs the last closing tag with the nearest opening tag before it, so a stray extra opening
    tag (`<answer><answer>x</answer>`) yields "x". Two `rfind`s: linear time on any input.
    """
    close = text.rfind(f"</{tag}>")
    if close < 0:
        return None
    open_tag = f"<{tag}>"
    start = text.rfind(open_tag, 0, close)
    if start < 0:
        return None
    return text[start + len(open_tag) : close]


def after_thinking(text: str) -> str:
    """The text after the last `</think>` (all of it without one): where the answer is, so that an answer the
    thinking tried and then revised does not count."""
    close = text.rfind(THINK_CLOSE)
    return text if close < 0 else text[close + len(THINK_CLOSE):]


def think_content(completion: str, *, prefill: str = "") -> str | None:
    """The chain of thought: text after the first `<think>` up to the next `</think>`.

    A think block cut off by the generation limit runs to the end of the text. None without `<think>`.
    """
    text = prefill + completion
    start = text.find("<think>")
    if start < 0:
        return None
    start += len("<think>")
    end = text.find("</think>", start)
    return text[start:] if end < 0 else text[start:end]


def strict(completion: str, *, prefill: str = "") -> float:
    """1.0 if `prefill + completion` is exactly the R1 layout, else 0.0.

    Layout: `<think>\\n{reasoning}\\n</think>\\n<answer>\\n{answer}\\n</answer>`, each tag exactly once,
    both blocks non-blank, nothing but whitespace after `</answer>`.
    """
    text = prefill + completion
    # Counting first keeps the regex to a single candidate split: linear time, no backtracking blow-up.
    if any(text.count(tag) != 1 for tag in _LAYOUT_TAGS):
        return 0.0
    match = _STRICT_LAYOUT.fullmatch(text)
    if match is None or not match["think"].strip() or not match["answer"].strip():
        return 0.0
    return 1.0


def tag_count(completion: str, *, prefill: str = "") -> float:
    """Partial credit: 0.25 for each of `<think>`, `</think>`, `<answer>`, `</answer>` seen exactly once.

    A dense signal early in training, before the strict layout is ever produced.
    """
    text = prefill + completion
    return 0.25 * sum(text.count(tag) == 1 for tag in _LAYOUT_TAGS)
