"""Prompts for the RL tasks: Countdown in TinyZero's layouts, math word problems in R1-Zero's.

Countdown (`countdown_prompt`) has three layouts:
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

Math problems (`math_prompt`) have two of them, built by the same code:
* 'base': R1-Zero's: the preamble also spells out the `<think> </think> <answer> </answer>` layout,
  the question is the User's turn, and the Assistant turn is opened with `<think>`.
* 'chat': one user turn for the model's chat template, asking for the final answer in `\\boxed{}`; no
  system turn (DeepSeek's usage advice for its R1 models: every instruction in the user turn); the
  assistant turn is left to the template and the model.
`r1jax.rewards.math` reads either answer (the last `<answer>` block, else the last `\\boxed{}`).

Programming problems (`code_prompt`) have the same two, asking for the program in a ```python block
(inside the `<answer>` tags for 'base'), which `r1jax.rewards.code` runs: the last such block after the
thinking.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

THINK_TAG = "<think>"
THINK_OPENING = f"Let me solve this step by step.\n{THINK_TAG}"

TemplateName = Literal["base", "compact", "chat"]
TEMPLATES: tuple[TemplateName, ...] = ("base", "compact", "chat")
MATH_TEMPLATES: tuple[TemplateName, ...] = ("base", "chat")
TASK_TEMPLATES: dict[str, tuple[TemplateName, ...]] = {
    "countdown": TEMPLATES, "math": MATH_TEMPLATES, "code": MATH_TEMPLATES}
MATH_THINK_OPENING = THINK_TAG

Message = dict[str, str]

_BASE_PREAMBLE = (
    "A conversation between User and Assistant. The User asks a question and the Assistant answers it: "
    "the Assistant first reasons the problem through in its head, then gives the User the answer."
)
_CHAT_SYSTEM = "You are a helpful assistant. You reason the problem through first, then give the user the answer."
_MATH_LAYOUT = (
    "The Assistant writes its reasoning inside <think> </think> tags and then the answer inside <answer> </answer> "
    "tags, like this: <think> reasoning </think> <answer> answer </answer>."
)
_MATH_CHAT_REQUEST = "Reason step by step, then give the final answer inside \\boxed{}."
_CODE_REQUEST = (
    "Write the solution as a complete Python 3 program in one ```python code block: it reads the input from "
    "standard input and prints the output, unless the problem asks for a function.")
_CODE_STARTER_REQUEST = "Write the solution in one ```python code block, completing this starter code:"
_CODE_LAYOUT = (
    "The Assistant writes its reasoning inside <think> </think> tags and then the answer inside <answer> </answer> "
    "tags, with the code fences on lines of their own, like this: <think> reasoning </think> <answer>\n```python\n"
    "program\n```\n</answer>.")


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


def _plain_conversation(preamble: str, user_turn: str, opening: str) -> str:
    """The layout of every 'base' template: preamble, the User's turn, the opened Assistant turn."""
    return f"{preamble}\nUser: {user_turn}\nAssistant: {opening}"


def _chat(user_turn: str, opening: str) -> list[Message]:
    """System and user turns, then an assistant turn for the model to continue."""
    return [{"role": "system", "content": _CHAT_SYSTEM}, {"role": "user", "content": user_turn},
            {"role": "assistant", "content": opening}]


def _renderer_for_chat(renderer: ChatTemplateRenderer | None) -> ChatTemplateRenderer:
    if renderer is None:
        raise ValueError("the 'chat' template needs a renderer, e.g. the model's Tokenizer")
    return renderer


def base_prompt(nums: Sequence[int], target: int) -> str:
    """The 'base' template: plain text ending with the opened Assistant turn."""
    return _plain_conversation(_BASE_PREAMBLE, task_text(nums, target), THINK_OPENING)


def compact_prompt(nums: Sequence[int], target: int) -> str:
    return f"Numbers: {' '.join(str(n) for n in nums)}. Target: {target}.\n<think>"


def chat_messages(nums: Sequence[int], target: int) -> list[Message]:
    """The 'chat' template: system and user turns, then the assistant turn to be continued."""
    return _chat(task_text(nums, target), THINK_OPENING)


def render_chat(messages: Sequence[Message], renderer: ChatTemplateRenderer, **extra_vars: Any) -> str:
    """Render `messages` with a chat template, leaving a final assistant turn open.

    Chat templates close every turn they render, so the final assistant turn is not given to the
    template: the rest is rendered with the generation prompt (which opens an assistant turn) and
    the prefill is appended. Unlike `transformers`' `continue_final_message` (which renders the turn
    and cuts after its text), this keeps what the generation prompt adds, e.g. DeepSeek-R1's opening
    `<think>`; a prefill ending in `<think>` then loses that tag, so the thought opens once.
    """
    *history, last = messages
    if last["role"] != "assistant":
        return renderer.apply_chat_template(messages, add_generation_prompt=True, **extra_vars)
    opened = renderer.apply_chat_template(history, add_generation_prompt=True, **extra_vars)
    prefill = last["content"]
    if opened.rstrip().endswith(THINK_TAG) and prefill.rstrip().endswith(THINK_TAG):
        prefill = prefill.rstrip()[:-len(THINK_TAG)]
    return opened + prefill


def countdown_prompt(
    nums: Sequence[int], target: int, *, template: TemplateName, renderer: ChatTemplateRenderer | None = None
) -> str:
    """The prompt text for one problem; 'chat' needs the model's tokenizer (or other `renderer`)."""
    if template == "base":
        return base_prompt(nums, target)
    if template == "compact":
        return compact_prompt(nums, target)
    if template == "chat":
        return render_chat(chat_messages(nums, target), _renderer_for_chat(renderer))
    raise ValueError(f"unknown template {template!r}; expected one of {TEMPLATES}")


def math_base_prompt(question: str) -> str:
    """R1-Zero's layout for a base model: the answer format in the preamble, thinking opened."""
    return _plain_conversation(f"{_BASE_PREAMBLE} {_MATH_LAYOUT}", question.strip(), MATH_THINK_OPENING)


def math_chat_messages(question: str) -> list[Message]:
    """A user turn asking for a `\\boxed{}` answer; the template opens the assistant turn."""
    return [{"role": "user", "content": f"{question.strip()}\n\n{_MATH_CHAT_REQUEST}"}]


def math_prompt(question: str, *, template: TemplateName, renderer: ChatTemplateRenderer | None = None) -> str:
    """The prompt text for one math problem; 'chat' needs the model's tokenizer (or other `renderer`)."""
    if template == "base":
        return math_base_prompt(question)
    if template == "chat":
        return render_chat(math_chat_messages(question), _renderer_for_chat(renderer))
    raise ValueError(f"unknown template {template!r} for math problems; expected one of {MATH_TEMPLATES}")


def code_prompt(question: str, *, template: TemplateName, renderer: ChatTemplateRenderer | None = None,
                starter_code: str = "") -> str:
    """The prompt text for one programming problem, laid out as `math_prompt`'s; with `starter_code` (a function's
    signature, which function-call tests call), the request is to complete it."""
    if starter_code.strip():
        request = f"{question.strip()}\n\n{_CODE_STARTER_REQUEST}\n```python\n{starter_code.strip()}\n```"
    else:
        request = f"{question.strip()}\n\n{_CODE_REQUEST}"
    if template == "base":
        return _plain_conversation(f"{_BASE_PREAMBLE} {_CODE_LAYOUT}", request, MATH_THINK_OPENING)
    if template == "chat":
        return render_chat([{"role": "user", "content": request}], _renderer_for_chat(renderer))
    raise ValueError(f"unknown template {template!r} for programming problems; expected one of {MATH_TEMPLATES}")
