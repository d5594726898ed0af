"""A stand-in for a Qwen-style (ChatML) chat template, for tests of chat prompts."""

from collections.abc import Sequence
from typing import Any

from r1jax.data import prompts


class ChatML:
    def apply_chat_template(
        self, messages: Sequence[prompts.Message], *, add_generation_prompt: bool = False, **extra_vars: Any
    ) -> str:
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")
