"""Countdown prompts in TinyZero's two layouts.

* 'base': one plain-text string for base models: a short preamble framing a conversation between
  User and Assistant, the task as the User's turn, and an Assistant turn already opened with
  `THINK_OPENING`, so sampling continues inside the reasoning block.
* 'compact': one line for tiny models trained from scratch here: the numbers, the target, and the
  opened reasoning block; no preamble, since such a model has never read instructions.
* 'chat': a message list for instruct models (system, user, and an assistant turn holding
  `THINK_OPENING`), rendered by the model's own chat template with `render_chat`, which leaves
  that last turn open for the model to continue.

The answer layout the prompts ask for (`<think>` reasoning, then the equation in `<answer>` tags)
is the one `r1jax.rewards.countdown` and `r1jax.rewards.format` score.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

THINK_OPENING = "Let me solve this step by step.\n<think>"

TemplateName = Literal["base", "compact", "chat"]
TEMPLATES: tuple[TemplateName, ...] = ("base", "compact", "chat")

Message = dict[str, str]

_BASE_PREAMBLE = (
    "A conversation between User and Assistant. The User asks a question and the Assistant answers it: "
    "the Assistant first reasons the problem through in its head, then gives the User the answer."
)
_CHAT_SYSTEM = "You are a helpful assistant. You reason the problem through first, then give the user the answer."


class ChatTemplateRenderer(Protocol):
    """Anything with `r1jax.tokenizer.Tokenizer.apply_chat_template`'s text-rendering signature."""

    def apply_chat_template(
        self, messages: Sequence[Message], *, add_generation_prompt: bool = False, **extra_vars: Any
    ) -> str: ...


def task_text(nums: Sequence[int], target: int) -> str:
    """The task statement shared by both templates."""
    numbers = "[" + ", ".join(str(int(n)) for n in nums) + "]"
    return (
        f"Using the numbers {numbers}, create an equation that equals {int(target)}. "
        "You can use the basic arithmetic operations (+, -, *, /), and each number must be used exactly once. "
        "Show your reasoning in <think> </think> tags, then give the final equation in <answer> </answer> tags, "
        "for example <answer> (1 + 2) / 3 </answer>."
    )


def base_prompt(nums: Sequence[int], target: int) -> str:
    """The 'base' template: plain text ending with the opened Assistant turn."""
    return f"{_BASE_PREAMBLE}\nUser: {task_text(nums, target)}\nAssistant: {THINK_OPENING}"


def compact_prompt(nums: Sequence[int], target: int) -> str:
    return f"Numbers: {' '.join(str(n) for n in nums)}. Target: {target}.\n<think>"


def chat_messages(nums: Sequence[int], target: int) -> list[Message]:
    """The 'chat' template: system and user turns, then the assistant turn to be continued."""
    return [
        {"role": "system", "content": _CHAT_SYSTEM},
        {"role": "user", "content": task_text(nums, target)},
        {"role": "assistant", "content": THINK_OPENING},
    ]


def render_chat(messages: Sequence[Message], renderer: ChatTemplateRenderer, **extra_vars: Any) -> str:
    """Render `messages` with a chat template, leaving a final assistant turn open.

    Chat templates close every turn they render, so the final assistant turn is not given to the
    template: the rest is rendered with the generation prompt (which opens an assistant turn) and
    the prefill is appended, as `transformers`' `continue_final_message` would.
    """
    *history, last = messages
    if last["role"] != "assistant":
        return renderer.apply_chat_template(messages, add_generation_prompt=True, **extra_vars)
    return renderer.apply_chat_template(history, add_generation_prompt=True, **extra_vars) + last["content"]


def countdown_prompt(
    nums: Sequence[int], target: int, *, template: TemplateName, renderer: ChatTemplateRenderer | None = None
) -> str:
    """The prompt text for one problem; 'chat' needs the model's tokenizer (or other `renderer`)."""
    if template == "base":
        return base_prompt(nums, target)
    if template == "compact":
        return compact_prompt(nums, target)
    if template == "chat":
        if renderer is None:
            raise ValueError("the 'chat' template needs a renderer, e.g. the model's Tokenizer")
        return render_chat(chat_messages(nums, target), renderer)
    raise ValueError(f"unknown template {template!r}; expected one of {TEMPLATES}")
