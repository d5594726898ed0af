"""Inference-time scaling by budget forcing (s1: Muennighoff et al. 2025, "s1: Simple test-time scaling").

`budget_forced_generate` controls how long a model thinks:
* too short: when the model ends its thinking (writes `</think>`, or an EOS) before
  `min_thinking_tokens`, the close is dropped, "Wait" is appended and the model continues thinking;
* too long: at `max_thinking_tokens` the thinking is cut and `</think>` is forced.
Either way the thinking is then closed with `think_close + answer_opening` (e.g. "</think>\\n<answer>"
for the R1/Countdown layout; s1 appends "Final Answer:"), which keeps the model from thinking on in
its answer, and the model writes the answer in one more call. Thinking tokens count the inserted
"Wait"s. The model's close and the answer's stop strings are found in the decoded text, so any spelling
counts: one special token in the Qwen3/R1 vocabularies and in `r1jax.data.char_tokenizer`, several
tokens in Qwen2.5's (which merges a preceding space into the first one: " </think>"). The generate
function is given their usual spellings (`sampler.stop_string_sequences`) so that it stops early.

It drives any `GenerateFn`; `sampler_generate_fn` wraps `r1jax.sampler.generate`. Each round
continues from prompt + thinking so far as a new prompt. Cost: no KV cache is kept between rounds,
so every "Wait" re-prefills the prompt and the thinking so far (one parallel pass, cheap next to
decoding those tokens one by one), and a round decodes up to the largest remaining budget of its
rows. Each new (prompt bucket, max_new_tokens) pair compiles the sampler once.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Protocol

import jax

from r1jax import sampler
from r1jax.evaluate import R1_EVAL_TEMPERATURE, R1_EVAL_TOP_P
from r1jax.model import ModelConfig, Params


class GenerateFn(Protocol):
    """Completes each prompt with at most `max_new_tokens` tokens, stopping after any stop sequence.

    Returns the generated tokens of each prompt (the stop sequence or EOS included, no padding).
    """

    def __call__(self, prompts: list[list[int]], max_new_tokens: int,
                 stop_sequences: Sequence[Sequence[int]]) -> list[list[int]]: ...


@dataclasses.dataclass(frozen=True)
class BudgetForcedCompletion:
    """One budget-forced completion.

    Attributes:
      tokens: everything after the prompt: thinking (with the inserted "Wait"s), the close, the answer
        opening, the answer.
      thinking_tokens: tokens before the close, "Wait"s included.
      num_waits: how many times a "Wait" replaced an early close.
      forced_close: the thinking budget ran out before the model ended its thinking.
    """

    tokens: list[int]
    thinking_tokens: int
    num_waits: int
    forced_close: bool


def _thinking_end(tokens: Sequence[int], think_close: str, eos_ids: frozenset[int],
                  tokenizer: sampler.Decoder) -> int | None:
    """Index where the model ended its thinking: its first EOS, or the first token of the first close in
    its text (a token that also holds text before the close is dropped with it); None if it did not."""
    eos_at = next((index for index, token in enumerate(tokens) if token in eos_ids), len(tokens))
    through_close = sampler.first_stop_end(tokens[:eos_at], [think_close], tokenizer)
    if through_close is None:
        return eos_at if eos_at < len(tokens) else None
    return next(start for start in range(through_close - 1, -1, -1)
                if think_close in tokenizer.decode(list(tokens[start:through_close])))


class SplicingTokenizer(sampler.Decoder, Protocol):
    """What budget forcing needs: the texts it splices into a completion are encoded as continuations (no
    sentencepiece-style leading-space piece before "Wait")."""

    def encode_continuation(self, text: str) -> list[int]: ...


def budget_forced_generate(generate_fn: GenerateFn, tokenizer: SplicingTokenizer, prompts: Sequence[Sequence[int]], *,
                           max_thinking_tokens: int, max_answer_tokens: int, min_thinking_tokens: int = 0,
                           max_waits: int | None = None, eos_ids: Sequence[int] = (),
                           think_close: str = "</think>", wait: str = "Wait", answer_opening: str = "\n<answer>",
                           answer_stops: Sequence[str] = ()) -> list[BudgetForcedCompletion]:
    """Budget-forced completions of prompts that end inside an open thinking block (see the module docstring).

    `max_waits` caps the "Wait"s per prompt (None: as many as it takes to reach `min_thinking_tokens`;
    every "Wait" adds tokens, so the budget bounds them). A "Wait" that would not leave room to think on
    within `max_thinking_tokens` is not inserted. `answer_stops` (e.g. "</answer>") end the answer (it is cut
    after the first one in its text), as does an EOS in the generate function. For several samples per
    prompt, repeat the prompt.
    """
    if not 0 <= min_thinking_tokens <= max_thinking_tokens:
        raise ValueError(f"need 0 <= min_thinking_tokens ({min_thinking_tokens}) <= max_thinking_tokens "
                         f"({max_thinking_tokens})")
    if max_answer_tokens < 1:
        raise ValueError(f"max_answer_tokens={max_answer_tokens} must be >= 1")
    if max_waits is not None and max_waits < 0:
        raise ValueError(f"max_waits={max_waits} must be >= 0 or None")
    close_ids, wait_ids, opening_ids = (tokenizer.encode_continuation(text)
                                        for text in (think_close, wait, answer_opening))
    if not close_ids or not wait_ids:
        raise ValueError(f"think_close {think_close!r} and wait {wait!r} must encode to at least one token")
    eos = frozenset(eos_ids)
    close_spellings = sampler.stop_string_sequences(tokenizer, [think_close])

    thinking: list[list[int]] = [[] for _ in prompts]
    num_waits = [0] * len(prompts)
    forced_close = [max_thinking_tokens == 0] * len(prompts)
    active = [row for row in range(len(prompts)) if max_thinking_tokens > 0]
    while active:
        budgets = [max_thinking_tokens - len(thinking[row]) for row in active]
        outputs = generate_fn([list(prompts[row]) + thinking[row] for row in active], max(budgets), close_spellings)
        still_thinking = []
        for row, budget, output in zip(active, budgets, outputs, strict=True):
            output = list(output)[:budget]  # the call ran to the largest budget of the round
            end = _thinking_end(output, think_close, eos, tokenizer)
            # A call that stopped short of its budget for a reason of its own also ended the thinking.
            stopped = end is not None or len(output) < budget
            thinking[row] += output if end is None else output[:end]
            room_to_continue = len(thinking[row]) + len(wait_ids) < max_thinking_tokens
            waits_left = max_waits is None or num_waits[row] < max_waits
            if stopped and len(thinking[row]) < min_thinking_tokens and room_to_continue and waits_left:
                thinking[row] += wait_ids
                num_waits[row] += 1
                still_thinking.append(row)
            else:
                forced_close[row] = not stopped
        active = still_thinking

    answer_prompts = [list(prompt) + thought + close_ids + opening_ids for prompt, thought in zip(prompts, thinking)]
    answers = generate_fn(answer_prompts, max_answer_tokens, sampler.stop_string_sequences(tokenizer, answer_stops))
    answers = [list(answer)[:max_answer_tokens] for answer in answers]
    answers = [answer[:sampler.first_stop_end(answer, answer_stops, tokenizer) or len(answer)] for answer in answers]
    return [BudgetForcedCompletion(tokens=thought + close_ids + opening_ids + answer,
                                   thinking_tokens=len(thought), num_waits=waits, forced_close=forced)
            for thought, answer, waits, forced in zip(thinking, answers, num_waits, forced_close, strict=True)]


def sampler_generate_fn(config: ModelConfig, params: Params, *, eos_ids: Sequence[int], pad_id: int = 0,
                        seed: int = 0, temperature: float = R1_EVAL_TEMPERATURE, top_p: float = R1_EVAL_TOP_P,
                        top_k: int = 0, min_p: float = 0.0) -> GenerateFn:
    """A `GenerateFn` over `r1jax.sampler.generate` (one sample per prompt); each call draws with a fresh key."""
    key = jax.random.key(seed)
    call_index = itertools.count()

    def generate_fn(prompts: list[list[int]], max_new_tokens: int,
                    stop_sequences: Sequence[Sequence[int]]) -> list[list[int]]:
        result = sampler.generate(config, params, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                                  top_k=top_k, top_p=top_p, min_p=min_p, eos_ids=eos_ids,
                                  stop_sequences=stop_sequences, seed=jax.random.fold_in(key, next(call_index)),
                                  pad_id=pad_id)
        return [row[:length].tolist() for row, length in zip(result.tokens, result.lengths)]

    return generate_fn
