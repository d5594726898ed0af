"""Batched sampling and beam search with the decode loop on the device.

`generate(config, params, prompts, ...)` runs prompts of different lengths in one batch:

- Prompts are left-padded to a length bucket (`prompt_bucket`: powers of two), so every row writes
  its next token into the same cache slot and a handful of compiles serve every batch. Padding
  slots get segment id 0 and are never attended to; positions restart at 0 where a prompt starts.
- The batch is padded with dummy rows to a multiple of the mesh's data-parallel size; the rows are
  dropped before returning.
- One jitted prefill fills a static-shape KV cache (`bucket + max_new_tokens` slots), then repeats
  each prompt's cache rows `num_samples` times: the samples of a GRPO group share one prefill.
- The layers run one by one on per-layer weights and caches: a matmul on a layer's slice of a stacked
  array makes XLA copy that slice first, at every decode step. Stacked weights are split once per call
  (the weights take twice their memory while sampling); `per_layer_params` splits them once for a caller
  that samples many batches.
- One jitted `lax.while_loop` decodes until every row has stopped or the budget is spent; its
  state (cache included) is donated, so it is updated in place.

Log-probabilities: `token_logprobs` is the one function that turns logits into the log-probs the
sampler returns and `sequence_logprobs` (what a trainer calls) recomputes, so the GRPO ratio
starts at exactly 1 up to float rounding. They are log-probs of the temperature-scaled
distribution `log_softmax(logits / temperature)`, the distribution sampling draws from before
top-k/top-p/min-p filtering; the filters are NOT reflected in the returned log-probs. Greedy
decoding (`temperature=0`) reports log-probs at temperature 1.

Stops: EOS ids and token-level stop sequences are checked on the device after every token. Stop
strings are also matched on the host after generation (they need the tokenizer's decode): a row
whose text contains one is cut after the first token that completes it, and counts as finished.
Their usual spellings (`stop_string_sequences`: alone and after a space, a newline or a period, which
a BPE may merge into the string's first token, as Qwen's does in " </answer>") are added to the
device stop sequences, so the common cases stop early.

Filtering order follows `transformers`: temperature, then top-k (tokens tied with the k-th are
kept), then top-p (on the top-k renormalised probabilities; where the cut falls inside a group of tied
tokens, the lower ids are kept, where transformers keeps the higher), then min-p (relative to the most
likely token, so its place in the order does not matter).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from r1jax import model as model_lib
from r1jax import distributed, sharding
from r1jax.model import KVCache, ModelConfig, Params

Prompts = Sequence[Sequence[int]]

_MIN_BUCKET = 8


class Decoder(Protocol):
    """What stop strings need from a tokenizer (`r1jax.tokenizer.Tokenizer` has it)."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


@dataclasses.dataclass(frozen=True)
class SamplingSpec:
    """How the next token is drawn; static under jit. `temperature=0` is greedy; 0 / 1.0 turn filters off."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0

    def __post_init__(self):
        if self.temperature < 0:
            raise ValueError(f"temperature={self.temperature} must be >= 0 (0 is greedy)")
        if self.top_k < 0:
            raise ValueError(f"top_k={self.top_k} must be >= 0 (0 turns it off)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1] (1 turns it off)")
        if not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p={self.min_p} must be in [0, 1] (0 turns it off)")


@dataclasses.dataclass(frozen=True)
class SampleResult:
    """Completions on the host; row `i * num_samples + j` is sample j of prompt i.

    Attributes:
      tokens: int32 [rows, max_new_tokens]; `pad_id` after each row's length.
      lengths: int32 [rows]: generated tokens, the stopping EOS or stop-sequence tokens included.
      logprobs: float32 [rows, max_new_tokens]: `token_logprobs` of each generated token, 0 after the length.
      finished: bool [rows]: stopped on an EOS id, stop sequence or stop string; False means truncated.
    """

    tokens: np.ndarray
    lengths: np.ndarray
    logprobs: np.ndarray
    finished: np.ndarray


@dataclasses.dataclass(frozen=True)
class BeamSearchResult:
    """Beams per prompt, best first.

    Attributes:
      tokens: int32 [prompts, beam_width, max_new_tokens]; `pad_id` after each beam's length.
      lengths: int32 [prompts, beam_width], the EOS included.
      scores: float32 [prompts, beam_width]: sum of token log-probs / length ** length_penalty.
      finished: bool [prompts, beam_width]: ended on EOS; False means it reached max_new_tokens.
    """

    tokens: np.ndarray
    lengths: np.ndarray
    scores: np.ndarray
    finished: np.ndarray


# ---------------------------------------------------------------------------------------------
# Log-probabilities and sampling (shared by the decode loop and the trainer)


def scaled_log_softmax(logits_xV: jax.Array, temperature: float = 1.0) -> jax.Array:
    """`log_softmax(logits / temperature)` in float32; temperature 0 (greedy) counts as 1."""
    logits_xV = logits_xV.astype(jnp.float32)
    if temperature > 0:
        logits_xV = logits_xV / temperature
    return jax.nn.log_softmax(logits_xV, axis=-1)


def token_logprobs(logits_BxTxV: jax.Array, tokens_BxT: jax.Array, temperature: float = 1.0) -> jax.Array:
    """Log-prob of each token under the temperature-scaled distribution of its logits: `logprobs_BxT`."""
    logprobs_BxTxV = scaled_log_softmax(logits_BxTxV, temperature)
    return jnp.take_along_axis(logprobs_BxTxV, tokens_BxT[..., None].astype(jnp.int32), axis=-1)[..., 0]


def sequence_logprobs(config: ModelConfig, params: Params, tokens_BxL: jax.Array,
                      positions_BxL: jax.Array | None = None, segment_ids_BxL: jax.Array | None = None, *,
                      temperature: float = 1.0) -> jax.Array:
    """`logprobs_BxL[:, t] = log p(tokens[:, t] | tokens[:, :t])` recomputed with `model.forward`; column 0 is 0.

    For left-padded rows pass the positions/segment ids the sampler used (positions from 0 where the
    prompt starts, segment 0 on padding); entries on padding are meaningless and must be masked.
    """
    logits_BxLxV = model_lib.forward(config, params, tokens_BxL, positions_BxL, segment_ids_BxL)
    logprobs_BxLm1 = token_logprobs(logits_BxLxV[:, :-1], tokens_BxL[:, 1:], temperature)
    return jnp.pad(logprobs_BxLm1, ((0, 0), (1, 0)))


def sample_tokens(key: jax.Array, logits_BxV: jax.Array, spec: SamplingSpec) -> jax.Array:
    """Draws `tokens_B` from the temperature-scaled, filtered distribution; argmax when greedy."""
    if spec.temperature == 0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    scaled_BxV = logits_BxV.astype(jnp.float32) / spec.temperature
    vocab_size = scaled_BxV.shape[-1]
    if 0 < spec.top_k < vocab_size:
        # Every token tied with the k-th stays, as in transformers and vLLM (ties are common in bfloat16).
        kth_Bx1 = jax.lax.top_k(scaled_BxV, spec.top_k)[0][:, -1:]
        scaled_BxV = jnp.where(scaled_BxV >= kth_Bx1, scaled_BxV, -jnp.inf)
    if spec.top_p < 1:
        # The nucleus is a prefix of the sorted vocabulary: draw in sorted space, then map back to ids.
        sorted_BxV, token_ids_BxV = jax.lax.top_k(scaled_BxV, vocab_size)
        probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
        mass_before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV
        keep_BxV = (mass_before_BxV < spec.top_p) & _min_p_keep(sorted_BxV, sorted_BxV[:, :1], spec.min_p)
        choice_B = jax.random.categorical(key, jnp.where(keep_BxV, sorted_BxV, -jnp.inf), axis=-1)
        return jnp.take_along_axis(token_ids_BxV, choice_B[:, None], axis=-1)[:, 0].astype(jnp.int32)
    keep_BxV = _min_p_keep(scaled_BxV, jnp.max(scaled_BxV, axis=-1, keepdims=True), spec.min_p)
    return jax.random.categorical(key, jnp.where(keep_BxV, scaled_BxV, -jnp.inf), axis=-1).astype(jnp.int32)


def _min_p_keep(scaled: jax.Array, max_scaled: jax.Array, min_p: float) -> jax.Array:
    # p >= min_p * p_max  <=>  logit >= max_logit + log(min_p): no softmax needed.
    if min_p <= 0:
        return jnp.ones(scaled.shape, bool)
    return scaled >= max_scaled + np.log(min_p)


# ---------------------------------------------------------------------------------------------
# Host-side preparation


def prompt_bucket(length: int, cap: int) -> int:
    """Padded length of a batch of prompts (or completions): the next power of two (at least 8), at most `cap`."""
    return min(cap, max(_MIN_BUCKET, 1 << (length - 1).bit_length()))


def _check_ids(ids: Sequence[int], vocab_size: int, what: str) -> None:
    bad = [t for t in ids if not 0 <= int(t) < vocab_size]
    if bad:
        raise ValueError(f"{what} has token ids {bad[:5]} outside the vocabulary [0, {vocab_size})")


def _batch_multiple() -> int:
    """Rows per batch must be a multiple of the current mesh's data-parallel size (1 without a mesh)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return 1
    return sharding.data_parallel_size(dict(mesh.shape), tuple(nn.get_logical_axis_rules()))


def check_request(config: ModelConfig, prompts: Prompts, max_new_tokens: int, max_prompt_len: int | None,
                  pad_id: int, eos_ids: Sequence[int]) -> int:
    """Raises ValueError for a request `generate` cannot serve (naming the prompt by its index); returns the
    prompt length the cache leaves room for. For callers that sample in batches: checks them all at once."""
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be a positive integer")
    if max_prompt_len is None:
        max_prompt_len = config.max_position_embeddings - max_new_tokens
    if max_prompt_len <= 0:
        raise ValueError(f"no room for a prompt: max_prompt_len={max_prompt_len} with max_new_tokens={max_new_tokens} "
                         f"(the model allows {config.max_position_embeddings} positions)")
    if len(prompts) == 0:
        raise ValueError("prompts is empty; pass at least one prompt (a list of token ids)")
    for i, prompt in enumerate(prompts):
        if len(prompt) == 0:
            raise ValueError(f"prompt {i} is empty; every prompt needs at least one token (e.g. BOS)")
        if len(prompt) > max_prompt_len:
            raise ValueError(f"prompt {i} has {len(prompt)} tokens, more than max_prompt_len={max_prompt_len} "
                             f"(the cache holds max_prompt_len + max_new_tokens slots)")
        _check_ids(prompt, config.vocab_size, f"prompt {i}")
    _check_ids(eos_ids, config.vocab_size, "eos_ids")
    _check_ids([pad_id], config.vocab_size, "pad_id")
    return max_prompt_len


def _pad_prompts(config: ModelConfig, prompts: Prompts, max_new_tokens: int, max_prompt_len: int | None,
                 pad_id: int, eos_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int]:
    """Validates the request; returns left-padded `prompts_BxP`, `prompt_lengths_B` and the number of real rows."""
    max_prompt_len = check_request(config, prompts, max_new_tokens, max_prompt_len, pad_id, eos_ids)
    bucket = prompt_bucket(max(len(p) for p in prompts), max_prompt_len)
    multiple = _batch_multiple()
    num_rows = -(-len(prompts) // multiple) * multiple
    prompts_BxP = np.full((num_rows, bucket), pad_id, np.int32)
    lengths_B = np.ones((num_rows,), np.int32)  # dummy rows: one pad token, never read back
    for i, prompt in enumerate(prompts):
        prompts_BxP[i, bucket - len(prompt):] = np.asarray(prompt, np.int32)
        lengths_B[i] = len(prompt)
    return prompts_BxP, lengths_B, len(prompts)


def _stop_table(stop_sequences: Sequence[Sequence[int]], vocab_size: int) -> np.ndarray:
    """Stop sequences right-aligned in `stop_JxM`, -1 where a shorter one has no token."""
    for i, seq in enumerate(stop_sequences):
        if len(seq) == 0:
            raise ValueError(f"stop sequence {i} is empty")
        _check_ids(seq, vocab_size, f"stop sequence {i}")
    width = max((len(s) for s in stop_sequences), default=1)
    table = np.full((len(stop_sequences), width), -1, np.int32)
    for i, seq in enumerate(stop_sequences):
        table[i, width - len(seq):] = seq
    return table


# ---------------------------------------------------------------------------------------------
# Device code


def _shard(x: jax.Array, *logical_axes: str | None) -> jax.Array:
    """Constrains `x` to the current mesh by logical axes; axes that don't divide are left unsharded."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    spec = sharding.logical_to_spec(logical_axes, x.shape, mesh, tuple(nn.get_logical_axis_rules()))
    return jax.lax.with_sharding_constraint(x, spec)


def _shard_cache(cache: KVCache) -> KVCache:
    def shard_kv(x):
        return _shard(x, "activation_batch", "activation_kv_heads", None, None)

    return KVCache(tuple(map(shard_kv, cache.layer_k_BxKxHxS)), tuple(map(shard_kv, cache.layer_v_BxKxSxH)),
                   _shard(cache.positions_BxS, "activation_batch", None),
                   _shard(cache.segment_ids_BxS, "activation_batch", None))


def _repeat_rows(cache: KVCache, times: int) -> KVCache:
    """Each batch row `times` times in a row (row i -> rows i*times ... i*times + times - 1)."""
    if times == 1:
        return cache
    return jax.tree.map(lambda x: jnp.repeat(x, times, axis=0), cache)


def _take_rows(cache: KVCache, rows_B: jax.Array) -> KVCache:
    return jax.tree.map(lambda x: jnp.take(x, rows_B, axis=0), cache)


def _prefill(config: ModelConfig, params: Params, prompts_BxP: jax.Array, prompt_lengths_B: jax.Array,
             num_slots: int) -> tuple[jax.Array, KVCache]:
    """Runs the left-padded prompts through the model: last-position `logits_BxV` and the filled cache."""
    B, P = prompts_BxP.shape
    prompts_BxP = _shard(prompts_BxP, "activation_batch", None)
    padding_B = P - prompt_lengths_B
    slots_P = jnp.arange(P, dtype=jnp.int32)
    segment_ids_BxP = (slots_P[None] >= padding_B[:, None]).astype(jnp.int32)
    positions_BxP = jnp.maximum(slots_P[None] - padding_B[:, None], 0)
    # A cache of the prompt's slots only, so the prompt does not attend over the empty decode slots too.
    cache = _shard_cache(model_lib.init_cache(config, B, P))
    hidden_BxPxE, cache = model_lib.apply(config, params, prompts_BxP, positions_BxP, segment_ids_BxP, cache, 0)
    # Left padding puts every prompt's last token in the last slot: only it needs logits.
    logits_BxV = model_lib.logits_from_hidden(config, params, hidden_BxPxE[:, -1:])[:, 0]
    return logits_BxV, _shard_cache(model_lib.extend_cache(cache, num_slots))


def _decode_step(config: ModelConfig, params: Params, cache: KVCache, tokens_B: jax.Array, positions_B: jax.Array,
                 write_index: jax.Array) -> tuple[jax.Array, KVCache]:
    """Feeds one token per row at slot `write_index`: next `logits_BxV` and the cache."""
    hidden_Bx1xE, cache = model_lib.apply(config, params, tokens_B[:, None], positions_B[:, None],
                                          jnp.ones_like(tokens_B)[:, None], cache, write_index)
    return model_lib.logits_from_hidden(config, params, hidden_Bx1xE)[:, 0], _shard_cache(cache)


_unstack_layers = jax.jit(model_lib.unstack_layers)


def per_layer_params(params: Params) -> Params:
    """The weights as the decode loops read them: `model.unstack_layers`, a copy of the layer weights.

    `generate` and `beam_search` make it at every call from stacked weights; a caller that samples many
    batches with the same weights passes its result instead, and keeps one copy of the weights in memory
    by dropping the stacked ones.
    """
    return params if isinstance(params["layers"], tuple) else _unstack_layers(params)


class _SampleState(NamedTuple):
    cache: KVCache
    tokens_BxN: jax.Array
    logprobs_BxN: jax.Array
    recent_BxM: jax.Array  # the last M generated tokens (-1 before any), for stop-sequence matching
    lengths_B: jax.Array
    done_B: jax.Array  # stopped on EOS or a stop sequence (dummy rows start done)
    prompt_lengths_B: jax.Array
    step: jax.Array  # tokens generated so far
    key: jax.Array


def _record_next_tokens(spec: SamplingSpec, pad_id: int, state: _SampleState, logits_BxV: jax.Array,
                        eos_E: jax.Array, stop_JxM: jax.Array) -> _SampleState:
    """Samples token `state.step` of every row that is still running and checks whether it stops the row."""
    key, step_key = jax.random.split(state.key)
    running_B = ~state.done_B
    tokens_B = jnp.where(running_B, sample_tokens(step_key, logits_BxV, spec), pad_id)
    logprobs_B = jnp.where(running_B, token_logprobs(logits_BxV, tokens_B, spec.temperature), 0.0)
    recent_BxM = jnp.concatenate([state.recent_BxM[:, 1:], tokens_B[:, None]], axis=1)
    stops_B = jnp.isin(tokens_B, eos_E)
    if stop_JxM.shape[0]:
        wildcard_JxM = stop_JxM < 0
        matches_BxJ = jnp.all((recent_BxM[:, None] == stop_JxM[None]) | wildcard_JxM[None], axis=-1)
        stops_B |= jnp.any(matches_BxJ, axis=-1)
    return state._replace(
        tokens_BxN=jax.lax.dynamic_update_index_in_dim(state.tokens_BxN, tokens_B, state.step, axis=1),
        logprobs_BxN=jax.lax.dynamic_update_index_in_dim(state.logprobs_BxN, logprobs_B, state.step, axis=1),
        recent_BxM=recent_BxM,
        lengths_B=state.lengths_B + running_B.astype(jnp.int32),
        done_B=state.done_B | (running_B & stops_B),
        step=state.step + 1,
        key=key)


@functools.partial(jax.jit, static_argnames=("config", "spec", "num_samples", "max_new_tokens", "pad_id"))
def _start_sampling(config: ModelConfig, spec: SamplingSpec, num_samples: int, max_new_tokens: int, pad_id: int,
                    params: Params, prompts_BxP: jax.Array, prompt_lengths_B: jax.Array, dummy_B: jax.Array,
                    eos_E: jax.Array, stop_JxM: jax.Array, key: jax.Array) -> _SampleState:
    """Prefill once per prompt, repeat for the samples, draw every sample's first token."""
    logits_BxV, cache = _prefill(config, params, prompts_BxP, prompt_lengths_B,
                                 prompts_BxP.shape[1] + max_new_tokens)
    rows = prompts_BxP.shape[0] * num_samples
    state = _SampleState(
        cache=_shard_cache(_repeat_rows(cache, num_samples)),
        tokens_BxN=_shard(jnp.full((rows, max_new_tokens), pad_id, jnp.int32), "activation_batch", None),
        logprobs_BxN=_shard(jnp.zeros((rows, max_new_tokens), jnp.float32), "activation_batch", None),
        recent_BxM=jnp.full((rows, stop_JxM.shape[1]), -1, jnp.int32),
        lengths_B=jnp.zeros((rows,), jnp.int32),
        done_B=jnp.repeat(dummy_B, num_samples),
        prompt_lengths_B=jnp.repeat(prompt_lengths_B, num_samples),
        step=jnp.zeros((), jnp.int32),
        key=key)
    return _record_next_tokens(spec, pad_id, state, jnp.repeat(logits_BxV, num_samples, axis=0), eos_E, stop_JxM)


@functools.partial(jax.jit, static_argnames=("config", "spec", "pad_id"), donate_argnames=("state",))
def _continue_sampling(config: ModelConfig, spec: SamplingSpec, pad_id: int, params: Params, state: _SampleState,
                       eos_E: jax.Array, stop_JxM: jax.Array) -> _SampleState:
    """Decodes until every row is done or the budget is spent."""
    max_new_tokens = state.tokens_BxN.shape[1]
    prompt_slots = state.cache.positions_BxS.shape[1] - max_new_tokens

    def keep_going(s: _SampleState) -> jax.Array:
        return (s.step < max_new_tokens) & ~jnp.all(s.done_B)

    def step(s: _SampleState) -> _SampleState:
        last_B = jax.lax.dynamic_index_in_dim(s.tokens_BxN, s.step - 1, axis=1, keepdims=False)
        logits_BxV, cache = _decode_step(config, params, s.cache, last_B, s.prompt_lengths_B + s.step - 1,
                                         prompt_slots + s.step - 1)
        return _record_next_tokens(spec, pad_id, s._replace(cache=cache), logits_BxV, eos_E, stop_JxM)

    return jax.lax.while_loop(keep_going, step, state)


# ---------------------------------------------------------------------------------------------
# Public entry points


def generate(config: ModelConfig, params: Params, prompts: Prompts, *, max_new_tokens: int, num_samples: int = 1,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0,
             eos_ids: Sequence[int] = (), stop_sequences: Sequence[Sequence[int]] = (),
             stop_strings: Sequence[str] = (), tokenizer: Decoder | None = None, seed: int | jax.Array = 0,
             max_prompt_len: int | None = None, pad_id: int = 0) -> SampleResult:
    """Samples `num_samples` completions of every prompt (lists of token ids); see the module docstring.

    Call inside `sharding.use_mesh(mesh, rules)` with params on that mesh to run sharded. `seed` (an int or
    a JAX key) fixes the draws for a given batch. `max_prompt_len` bounds the cache (default: the model's
    positions minus `max_new_tokens`); `stop_strings` need `tokenizer`.
    """
    spec = SamplingSpec(float(temperature), int(top_k), float(top_p), float(min_p))
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be >= 1")
    if stop_strings and tokenizer is None:
        raise ValueError("stop_strings need a tokenizer to decode the completions; pass tokenizer=")
    if any(not s for s in stop_strings):
        raise ValueError("stop_strings contains an empty string")
    prompts_BxP, prompt_lengths_B, num_prompts = _pad_prompts(config, prompts, max_new_tokens, max_prompt_len,
                                                              pad_id, eos_ids)
    encoded_stops = stop_string_sequences(tokenizer, stop_strings) if stop_strings else []
    stop_JxM = _stop_table([*stop_sequences, *encoded_stops], config.vocab_size)
    eos_E = np.asarray(list(eos_ids), np.int32)
    dummy_B = np.arange(len(prompts_BxP)) >= num_prompts
    key = jax.random.key(seed) if isinstance(seed, (int, np.integer)) else seed

    params = per_layer_params(params)
    state = _start_sampling(config, spec, num_samples, int(max_new_tokens), pad_id, params, prompts_BxP,
                            prompt_lengths_B, dummy_B, eos_E, stop_JxM, key)
    state = _continue_sampling(config, spec, pad_id, params, state, eos_E, stop_JxM)

    rows = num_prompts * num_samples
    # Whole on every process: each decodes and scores from them (see the GRPO trainer).
    tokens, logprobs, lengths, done = distributed.to_host(
        (state.tokens_BxN, state.logprobs_BxN, state.lengths_B, state.done_B))
    result = SampleResult(tokens=np.array(tokens[:rows]), lengths=np.array(lengths[:rows]),
                          logprobs=np.array(logprobs[:rows]), finished=np.array(done[:rows]))
    if stop_strings:
        _cut_at_stop_strings(result, stop_strings, tokenizer, pad_id)
    return result


# Characters a stop string often follows, which a BPE may merge into the string's first token.
_STOP_CONTEXTS = ("", " ", "\n", "\n\n", ".")


def stop_string_sequences(tokenizer: Decoder, stop_strings: Sequence[str]) -> list[list[int]]:
    """Token sequences that spell the stop strings: each string encoded alone and after each of
    `_STOP_CONTEXTS`, cut to the shortest suffix whose text still holds the string. A device loop that
    stops on them stops at the usual spellings; only a text check after decoding catches every one."""
    sequences: list[list[int]] = []
    for stop in stop_strings:
        for context in _STOP_CONTEXTS:
            ids = list(tokenizer.encode(context + stop))
            start = next((k for k in range(len(ids) - 1, -1, -1) if stop in tokenizer.decode(ids[k:])), None)
            if start is not None and ids[start:] not in sequences:
                sequences.append(ids[start:])
    return sequences


def first_stop_end(tokens: Sequence[int], stop_strings: Sequence[str], tokenizer: Decoder) -> int | None:
    """The length of the shortest prefix of `tokens` whose text holds one of `stop_strings`; None if the
    whole text holds none."""

    def contains_stop(num_tokens: int) -> bool:
        text = tokenizer.decode(list(tokens[:num_tokens]))
        return any(s in text for s in stop_strings)

    if not contains_stop(len(tokens)):
        return None
    low, high = 1, len(tokens)  # binary search: a prefix holding a stop string stays holding it
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if contains_stop(mid) else (mid + 1, high)
    return low


def _cut_at_stop_strings(result: SampleResult, stop_strings: Sequence[str], tokenizer: Decoder, pad_id: int) -> None:
    """Shortens (in place) every row whose text contains a stop string to the first token that completes one."""
    for i, row in enumerate(result.tokens):
        low = first_stop_end(row[:int(result.lengths[i])].tolist(), stop_strings, tokenizer)
        if low is None:
            continue
        result.tokens[i, low:] = pad_id
        result.logprobs[i, low:] = 0.0
        result.lengths[i] = low
        result.finished[i] = True


# ---------------------------------------------------------------------------------------------
# Beam search


class _BeamState(NamedTuple):
    """W live beams and the W best ended beams per prompt; cache row `b * W + w` is live beam w of prompt b."""

    cache: KVCache
    alive_tokens_BxWxN: jax.Array
    alive_sums_BxW: jax.Array  # summed log-probs; -inf marks an empty beam
    ended_tokens_BxWxN: jax.Array
    ended_scores_BxW: jax.Array  # length-penalised, best first; -inf marks an empty entry
    ended_lengths_BxW: jax.Array
    prompt_lengths_B: jax.Array
    step: jax.Array
    open_at_last_step_B: jax.Array  # whether each prompt was open when the latest step began


def _is_open(state: _BeamState) -> jax.Array:
    """Prompts with fewer than W ended beams; the others are closed (transformers' early_stopping=True)."""
    return state.ended_scores_BxW[:, -1] == -jnp.inf


def _penalised(sums: jax.Array, length: jax.Array | int, length_penalty: jax.Array) -> jax.Array:
    return sums / jnp.asarray(length, jnp.float32) ** length_penalty


def _best_of(scores_BxC: jax.Array, width: int, *per_candidate: jax.Array) -> tuple[jax.Array, ...]:
    """The `width` best candidates by score, and the same selection of each `[B, C, ...]` array."""
    top_scores_BxW, index_BxW = jax.lax.top_k(scores_BxC, width)
    picked = [jnp.take_along_axis(x, index_BxW.reshape(index_BxW.shape + (1,) * (x.ndim - 2)), axis=1)
              for x in per_candidate]
    return top_scores_BxW, index_BxW, *picked


def _extend_beams(length_penalty: jax.Array, state: _BeamState, logits_BWxV: jax.Array, eos_E: jax.Array) -> _BeamState:
    """One beam-search step: the K = (1 + #EOS ids) * W best one-token extensions (at least 2W, as
    transformers keeps), so that W non-EOS ones are always among them; those ending in EOS and ranked within
    the top W join the ended pool, the W best others stay live. The cache follows the live beams' parents."""
    B, W, _ = state.alive_tokens_BxWxN.shape
    V = logits_BWxV.shape[-1]
    K = min(max(2, 1 + eos_E.shape[0]) * W, W * V)
    logprobs_BxWxV = scaled_log_softmax(logits_BWxV).reshape(B, W, V)
    sums_BxWV = (state.alive_sums_BxW[..., None] + logprobs_BxWxV).reshape(B, W * V)
    sums_BxK, flat_BxK = jax.lax.top_k(sums_BxWV, K)
    parents_BxK, new_tokens_BxK = flat_BxK // V, flat_BxK % V
    tokens_BxKxN = jnp.take_along_axis(state.alive_tokens_BxWxN, parents_BxK[..., None], axis=1)
    tokens_BxKxN = jax.lax.dynamic_update_index_in_dim(tokens_BxKxN, new_tokens_BxK, state.step, axis=2)
    length = state.step + 1
    is_open_B = _is_open(state)
    is_eos_BxK = jnp.isin(new_tokens_BxK, eos_E)
    can_end_BxK = is_eos_BxK & (jnp.arange(K) < W) & is_open_B[:, None]
    ending_scores_BxK = jnp.where(can_end_BxK, _penalised(sums_BxK, length, length_penalty), -jnp.inf)
    ended_scores, _, ended_tokens, ended_lengths = _best_of(
        jnp.concatenate([state.ended_scores_BxW, ending_scores_BxK], axis=1), W,
        jnp.concatenate([state.ended_tokens_BxWxN, tokens_BxKxN], axis=1),
        jnp.concatenate([state.ended_lengths_BxW, jnp.full((B, K), length, jnp.int32)], axis=1))
    alive_sums, _, alive_tokens, parents_BxW = _best_of(
        jnp.where(is_eos_BxK, -jnp.inf, sums_BxK), W, tokens_BxKxN, parents_BxK)
    rows_BW = (jnp.arange(B, dtype=jnp.int32)[:, None] * W + parents_BxW).reshape(-1)
    return state._replace(cache=_shard_cache(_take_rows(state.cache, rows_BW)), alive_tokens_BxWxN=alive_tokens,
                          alive_sums_BxW=alive_sums, ended_tokens_BxWxN=ended_tokens,
                          ended_scores_BxW=ended_scores, ended_lengths_BxW=ended_lengths, step=length,
                          open_at_last_step_B=is_open_B)


@functools.partial(jax.jit, static_argnames=("config", "beam_width", "max_new_tokens", "pad_id"))
def _run_beam_search(config: ModelConfig, beam_width: int, max_new_tokens: int, pad_id: int, length_penalty: jax.Array,
                     params: Params, prompts_BxP: jax.Array, prompt_lengths_B: jax.Array, dummy_B: jax.Array,
                     eos_E: jax.Array) -> tuple[jax.Array, ...]:
    B, P = prompts_BxP.shape
    W, N = beam_width, max_new_tokens
    logits_BxV, cache = _prefill(config, params, prompts_BxP, prompt_lengths_B, P + N)
    # All W copies of a prompt are equal; only the first may expand at the first step.
    first_sums_BxW = jnp.where(jnp.arange(W) == 0, 0.0, -jnp.inf) * jnp.ones((B, 1))
    state = _BeamState(
        cache=_shard_cache(_repeat_rows(cache, W)),
        alive_tokens_BxWxN=jnp.full((B, W, N), pad_id, jnp.int32),
        alive_sums_BxW=first_sums_BxW,
        ended_tokens_BxWxN=jnp.full((B, W, N), pad_id, jnp.int32),
        # Dummy rows start with a full pool, so they never hold back the early stop.
        ended_scores_BxW=jnp.where(dummy_B[:, None], 0.0, -jnp.inf) * jnp.ones((1, W)),
        ended_lengths_BxW=jnp.zeros((B, W), jnp.int32),
        prompt_lengths_B=prompt_lengths_B,
        step=jnp.zeros((), jnp.int32),
        open_at_last_step_B=~dummy_B)
    state = _extend_beams(length_penalty, state, jnp.repeat(logits_BxV, W, axis=0), eos_E)

    def keep_going(s: _BeamState) -> jax.Array:
        return (s.step < N) & jnp.any(_is_open(s))

    def step(s: _BeamState) -> _BeamState:
        last_BW = jax.lax.dynamic_index_in_dim(s.alive_tokens_BxWxN, s.step - 1, axis=2, keepdims=False).reshape(-1)
        positions_BW = jnp.repeat(s.prompt_lengths_B, W) + s.step - 1
        logits_BWxV, cache = _decode_step(config, params, s.cache, last_BW, positions_BW, P + s.step - 1)
        return _extend_beams(length_penalty, s._replace(cache=cache), logits_BWxV, eos_E)

    state = jax.lax.while_loop(keep_going, step, state)
    # Where the budget ran out with the prompt open at the last step, its live beams compete as truncated
    # hypotheses, also against beams that ended in that step.
    competing_B = state.open_at_last_step_B & (state.step == N)
    truncated_scores_BxW = jnp.where(competing_B[:, None], _penalised(state.alive_sums_BxW, N, length_penalty),
                                     -jnp.inf)
    scores, index, tokens, lengths = _best_of(
        jnp.concatenate([state.ended_scores_BxW, truncated_scores_BxW], axis=1), W,
        jnp.concatenate([state.ended_tokens_BxWxN, state.alive_tokens_BxWxN], axis=1),
        jnp.concatenate([state.ended_lengths_BxW, jnp.full((B, W), N, jnp.int32)], axis=1))
    return tokens, lengths, scores, (index < W) & (scores > -jnp.inf)


def beam_search(config: ModelConfig, params: Params, prompts: Prompts, *, beam_width: int, max_new_tokens: int,
                length_penalty: float = 1.0, eos_ids: Sequence[int] = (), max_prompt_len: int | None = None,
                pad_id: int = 0) -> BeamSearchResult:
    """The `beam_width` best completions of every prompt by `sum(logprobs) / length ** length_penalty`.

    Log-probs are at temperature 1. A beam ends on an EOS id. A prompt is closed once it has `beam_width`
    ended beams (transformers' `early_stopping=True`, which makes width 1 exactly greedy); where the
    budget runs out while it is open (also if it closes in the last step), the live beams compete too,
    as unfinished hypotheses.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width={beam_width} must be >= 1")
    prompts_BxP, prompt_lengths_B, num_prompts = _pad_prompts(config, prompts, max_new_tokens, max_prompt_len,
                                                              pad_id, eos_ids)
    dummy_B = np.arange(len(prompts_BxP)) >= num_prompts
    outputs = _run_beam_search(config, int(beam_width), int(max_new_tokens), pad_id, np.float32(length_penalty),
                               per_layer_params(params), prompts_BxP, prompt_lengths_B, dummy_B,
                               np.asarray(list(eos_ids), np.int32))
    tokens, lengths, scores, finished = (np.array(x[:num_prompts]) for x in jax.device_get(outputs))
    return BeamSearchResult(tokens=tokens, lengths=lengths, scores=scores, finished=finished)
