"""Sampler: greedy against `transformers` and `forward`, batching, log-probs, filters, stops, beam search, sharding."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from r1jax import hf, runtime, sampler, sharding
from r1jax import model as model_lib
from tests.hf_models import make_hf_model

PROMPTS = [[5, 17, 3, 99, 42], [7] * 11, [150, 2]]
NEW_TOKENS = 12

forward = jax.jit(model_lib.forward, static_argnums=0)


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    """variant -> (r1jax config, params, transformers model) with the same random weights."""
    pairs = {}
    for variant in ("qwen3-tied", "llama-untied"):
        reference = make_hf_model(variant)
        path = tmp_path_factory.mktemp(variant)
        reference.save_pretrained(path)
        config, params = hf.load_pretrained(str(path))
        pairs[variant] = (config, params, reference)
    return pairs


@pytest.fixture(scope="module")
def qwen3(hf_pair):
    config, params, _ = hf_pair["qwen3-tied"]
    return config, params


def _left_padded(sequences):
    """tokens, positions and segment ids of left-padded rows, as the sampler lays them out."""
    width = max(len(s) for s in sequences)
    tokens = np.zeros((len(sequences), width), np.int32)
    positions = np.zeros_like(tokens)
    segment_ids = np.zeros_like(tokens)
    for i, s in enumerate(sequences):
        tokens[i, width - len(s):] = s
        positions[i, width - len(s):] = np.arange(len(s))
        segment_ids[i, width - len(s):] = 1
    return tokens, positions, segment_ids


def _completions(result):
    return [list(row[:n]) for row, n in zip(result.tokens, result.lengths)]


def _greedy(config, params, prompts, **kwargs):
    return sampler.generate(config, params, prompts, max_new_tokens=NEW_TOKENS, temperature=0.0, **kwargs)


@pytest.mark.parametrize("variant", ["qwen3-tied", "llama-untied"])
def test_greedy_equals_transformers_and_argmax_of_forward(hf_pair, variant):
    config, params, reference = hf_pair[variant]
    result = _greedy(config, params, PROMPTS)
    assert result.tokens.shape == (len(PROMPTS), NEW_TOKENS) and not result.finished.any()
    for prompt, completion in zip(PROMPTS, _completions(result)):
        expected = reference.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=NEW_TOKENS,
                                      min_new_tokens=NEW_TOKENS, pad_token_id=0)
        assert completion == expected[0, len(prompt):].tolist()
    # Causality makes one forward over the final sequences the same as recomputing on the growing ones.
    sequences = [p + c for p, c in zip(PROMPTS, _completions(result))]
    logits = forward(config, params, *map(jnp.asarray, _left_padded(sequences)))
    np.testing.assert_array_equal(np.argmax(logits[:, -NEW_TOKENS - 1:-1], -1), result.tokens)


def test_mixed_length_batch_equals_prompts_one_by_one(qwen3):
    config, params = qwen3
    batch = _greedy(config, params, PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        # Weights split once by the caller, as the generate/distill/evaluate modes pass them, or per call.
        single = _greedy(config, sampler.per_layer_params(params) if i % 2 else params, [prompt])
        np.testing.assert_array_equal(single.tokens[0], batch.tokens[i])
        np.testing.assert_allclose(single.logprobs[0], batch.logprobs[i], atol=1e-5)


def _recomputed_logprobs_and_ranks(config, params, prompts, result, num_samples, temperature):
    """Per generated token: log-prob from `sequence_logprobs` and the token's rank in the forward logits."""
    sequences = [list(prompts[i // num_samples]) + c for i, c in enumerate(_completions(result))]
    tokens, positions, segment_ids = map(jnp.asarray, _left_padded(sequences))
    logprobs = jax.jit(sampler.sequence_logprobs, static_argnums=0, static_argnames="temperature")(
        config, params, tokens, positions, segment_ids, temperature=temperature)
    logits = forward(config, params, tokens, positions, segment_ids)
    ranks = jnp.sum(logits[:, :-1] > jnp.take_along_axis(logits[:, :-1], tokens[:, 1:, None], -1), -1)
    width = tokens.shape[1]
    out_logprobs, out_ranks = np.zeros_like(result.logprobs), np.zeros(result.tokens.shape, np.int32)
    for i, n in enumerate(result.lengths):
        out_logprobs[i, :n] = logprobs[i, width - n:]
        out_ranks[i, :n] = ranks[i, width - n - 1:]
    return out_logprobs, out_ranks


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_equal_recomputation_and_top_k_is_respected(qwen3, temperature):
    config, params = qwen3
    result = sampler.generate(config, params, PROMPTS, max_new_tokens=NEW_TOKENS, num_samples=3,
                              temperature=temperature, top_k=20, eos_ids=[11], seed=1)
    assert result.tokens.shape == (len(PROMPTS) * 3, NEW_TOKENS)
    logprobs, ranks = _recomputed_logprobs_and_ranks(config, params, PROMPTS, result, 3, temperature)
    assert np.max(np.abs(result.logprobs - logprobs)) <= 1e-5
    assert ranks.max() < 20
    assert len({tuple(c) for c in _completions(result)}) > len(PROMPTS)  # the samples of a group differ
    again = sampler.generate(config, params, PROMPTS, max_new_tokens=NEW_TOKENS, num_samples=3,
                             temperature=temperature, top_k=20, eos_ids=[11], seed=1)
    np.testing.assert_array_equal(again.tokens, result.tokens)


def _filtered_distribution(logits, spec):
    """numpy reference: temperature, top-k, top-p on the renormalised top-k, min-p."""
    probs = np.exp(logits / spec.temperature - np.max(logits / spec.temperature))
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    keep = probs >= probs[order[spec.top_k - 1]] if spec.top_k else np.ones(len(probs), bool)  # ties with the k-th
    if spec.top_p < 1:
        kept = probs * keep / (probs * keep).sum()
        mass_before = np.cumsum(kept[order]) - kept[order]
        keep[order[mass_before >= spec.top_p]] = False
    keep &= probs >= spec.min_p * probs.max()
    return np.where(keep, probs, 0) / np.where(keep, probs, 0).sum()


DISTINCT_LOGITS = [2.0, 1.5, 1.4, 0.3, 0.0, -0.5, -1.0, -3.0]
TIED_LOGITS = [1.0, 2.0, 1.0, 0.0, 1.0, 2.0, -1.0, 1.0]  # as bfloat16 logits often are


@pytest.mark.parametrize("logits, spec", [
    (DISTINCT_LOGITS, sampler.SamplingSpec(temperature=1.0)),
    (DISTINCT_LOGITS, sampler.SamplingSpec(temperature=0.5, top_k=3)),
    (DISTINCT_LOGITS, sampler.SamplingSpec(temperature=1.0, top_p=0.7)),
    (DISTINCT_LOGITS, sampler.SamplingSpec(temperature=1.3, min_p=0.3)),
    (DISTINCT_LOGITS, sampler.SamplingSpec(temperature=0.8, top_k=5, top_p=0.8, min_p=0.05)),
    (TIED_LOGITS, sampler.SamplingSpec(temperature=1.0, top_k=3)),
    (TIED_LOGITS, sampler.SamplingSpec(temperature=1.0, top_k=3, top_p=0.8)),
], ids=str)
def test_filtered_sampling_matches_renormalised_distribution(logits, spec):
    logits = np.array(logits, np.float32)
    draws = 40_000
    tokens = jax.jit(sampler.sample_tokens, static_argnums=2)(
        jax.random.key(0), jnp.broadcast_to(logits, (draws, len(logits))), spec)
    expected = _filtered_distribution(logits, spec)
    counts = np.bincount(np.asarray(tokens), minlength=len(logits)) / draws
    assert np.all(counts[expected == 0] == 0), "a filtered-out token was drawn"
    np.testing.assert_allclose(counts, expected, atol=0.015)


def test_eos_and_stop_sequences_end_rows_and_truncation_is_reported(qwen3):
    config, params = qwen3
    free = _greedy(config, params, PROMPTS)
    eos = int(free.tokens[0, 4])
    stop = [int(t) for t in free.tokens[1, 6:8]]
    stopped = _greedy(config, params, PROMPTS, eos_ids=[eos, config.vocab_size - 1], stop_sequences=[stop], pad_id=1)
    for i, row in enumerate(free.tokens):
        ends = [k + 1 for k in range(NEW_TOKENS) if row[k] == eos]
        ends += [k + 1 for k in range(1, NEW_TOKENS) if list(row[k - 1:k + 1]) == stop]
        length = min(ends, default=NEW_TOKENS)
        assert stopped.lengths[i] == length and stopped.finished[i] == bool(ends)
        np.testing.assert_array_equal(stopped.tokens[i, :length], row[:length])
        assert np.all(stopped.tokens[i, length:] == 1) and np.all(stopped.logprobs[i, length:] == 0)
    assert stopped.finished[:2].all()


class _LetterTokenizer:
    """Each id decodes to two letters; encode knows no text, so stop strings are matched on the host only."""

    def decode(self, ids):
        return "".join(chr(97 + t % 26) + chr(97 + t // 26 % 26) for t in ids)

    def encode(self, text):
        return []


def test_stop_strings_cut_after_the_completing_token(qwen3):
    config, params = qwen3
    tokenizer = _LetterTokenizer()
    free = _greedy(config, params, PROMPTS)
    # A string spanning two tokens, starting inside the first: no token-level match could find it.
    text = tokenizer.decode(free.tokens[2, 5:7])
    stopped = _greedy(config, params, PROMPTS, stop_strings=[text[1:3]], tokenizer=tokenizer)
    row = 2
    assert stopped.finished[row] and stopped.lengths[row] <= 7
    n = stopped.lengths[row]
    assert text[1:3] in tokenizer.decode(stopped.tokens[row, :n])
    assert text[1:3] not in tokenizer.decode(stopped.tokens[row, :n - 1])
    assert np.all(stopped.logprobs[row, n:] == 0)


@pytest.mark.parametrize("kwargs,message", [
    (dict(prompts=[[1, 2], []]), "prompt 1 is empty"),
    (dict(prompts=[]), "prompts is empty"),
    (dict(prompts=[[1] * 40], max_prompt_len=32), "prompt 0 has 40 tokens"),
    (dict(max_new_tokens=0), "max_new_tokens=0"),
    (dict(eos_ids=[10_000]), "eos_ids has token ids"),
    (dict(prompts=[[1, 160]]), "prompt 0 has token ids"),
    (dict(top_p=0.0), "top_p"),
    (dict(stop_strings=["x"]), "need a tokenizer"),
])
def test_bad_requests_raise_clear_errors(qwen3, kwargs, message):
    config, params = qwen3
    request = dict(prompts=[[1, 2]], max_new_tokens=4) | kwargs
    with pytest.raises(ValueError, match=message):
        sampler.generate(config, params, request.pop("prompts"), **request)


def _score(logprobs, length, length_penalty):
    return float(np.sum(logprobs[:length]) / length ** length_penalty)


def test_beam_width_one_is_greedy_and_wider_beams_score_higher(qwen3):
    config, params = qwen3
    free = _greedy(config, params, PROMPTS)
    eos = int(free.tokens[1, 3])
    greedy = _greedy(config, params, PROMPTS, eos_ids=[eos])
    narrow = sampler.beam_search(config, params, PROMPTS, beam_width=1, max_new_tokens=NEW_TOKENS, eos_ids=[eos])
    np.testing.assert_array_equal(narrow.tokens[:, 0], greedy.tokens)
    np.testing.assert_array_equal(narrow.lengths[:, 0], greedy.lengths)
    np.testing.assert_array_equal(narrow.finished[:, 0], greedy.finished)
    wide = sampler.beam_search(config, params, PROMPTS, beam_width=4, max_new_tokens=NEW_TOKENS, eos_ids=[eos])
    for i in range(len(PROMPTS)):
        greedy_score = _score(greedy.logprobs[i], greedy.lengths[i], 1.0)
        np.testing.assert_allclose(narrow.scores[i, 0], greedy_score, rtol=1e-5)
        assert wide.scores[i, 0] >= greedy_score - 1e-5
        assert np.all(np.diff(wide.scores[i]) <= 0)


def test_beam_search_finds_the_exhaustive_optimum():
    vocab, new_tokens, eos = 5, 3, 0
    config = model_lib.get_model_config("tiny-qwen3", vocab_size=vocab)
    # Wider weights than the default init, so the next-token distributions are far from uniform.
    params = jax.tree.map(lambda x: x * 20 if x.ndim >= 2 else x, model_lib.init_params(config, jax.random.key(3)))
    prompts = [[1, 2, 3], [4, 1, 1]]
    continuations = [list(c) for c in itertools.product(range(vocab), repeat=new_tokens)]
    tokens = jnp.asarray([prompt + c for prompt in prompts for c in continuations])
    logprobs = np.asarray(jax.jit(sampler.sequence_logprobs, static_argnums=0)(config, params, tokens))[:, 3:]
    for length_penalty in (0.0, 1.0):
        result = sampler.beam_search(config, params, prompts, beam_width=vocab ** new_tokens,
                                     max_new_tokens=new_tokens, length_penalty=length_penalty, eos_ids=[eos])
        for i in range(len(prompts)):
            best_score, best = -np.inf, None
            for c, lp in zip(continuations, logprobs[i * len(continuations):]):
                length = c.index(eos) + 1 if eos in c else new_tokens
                score = _score(lp, length, length_penalty)
                if score > best_score:
                    best_score, best = score, c[:length]
            np.testing.assert_allclose(result.scores[i, 0], best_score, rtol=1e-5)
            assert list(result.tokens[i, 0, :result.lengths[i, 0]]) == best
            assert result.finished[i, 0] == (eos in best)


# Found by comparing many random prompts; each failed before the fix noted.
@pytest.mark.parametrize("prompt,eos,new_tokens,length_penalty", [
    # Several EOS ids: a step kept only 2W candidates, so EOS ones crowded out live beams.
    ([137, 89, 6], [44, 80, 110], 5, 1.0), ([81, 97, 155, 116, 101, 87], [138, 30, 122], 5, 1.0),
    # The beam pool filled in the last step, and that step's live (max-length) beams were shut out.
    ([149, 45, 130, 107], [157], 2, 0.0),
])
def test_beam_search_equals_transformers_early_stopping(hf_pair, prompt, eos, new_tokens, length_penalty):
    config, params, reference = hf_pair["qwen3-tied"]
    ours = sampler.beam_search(config, params, [prompt], beam_width=2, max_new_tokens=new_tokens, eos_ids=eos,
                               length_penalty=length_penalty)
    theirs = reference.generate(torch.tensor([prompt]), num_beams=2, num_return_sequences=2, do_sample=False,
                                max_new_tokens=new_tokens, early_stopping=True, length_penalty=length_penalty,
                                eos_token_id=eos, pad_token_id=0, output_scores=True, return_dict_in_generate=True)
    np.testing.assert_allclose(ours.scores[0], theirs.sequences_scores.numpy(), atol=1e-4)


@pytest.mark.parametrize("layout", [dict(fsdp=4, tensor=2), dict(data=8)], ids=str)
def test_sharded_sampling_and_beam_search_equal_single_device(layout):
    config = model_lib.get_model_config("tiny")
    params = jax.tree.map(lambda x: x * 10 if x.ndim >= 2 else x, model_lib.init_params(config, jax.random.key(0)))
    request = dict(max_new_tokens=8, num_samples=2, temperature=0.8, top_p=0.9, eos_ids=[3], seed=4)
    expected = sampler.generate(config, params, PROMPTS, **request)
    mesh, rules = sharding.make_mesh(layout), sharding.FSDP_TENSOR_RULES
    shardings = sharding.param_shardings(model_lib.param_logical_axes(config), model_lib.param_shapes(config),
                                         mesh, rules)
    with sharding.use_mesh(mesh, rules):
        sharded_params = jax.device_put(params, shardings)
        result = sampler.generate(config, sharded_params, PROMPTS, **request)
        if "tensor" in layout:  # beam search reorders cache rows: check it with sharded heads too
            beams = sampler.beam_search(config, sharded_params, PROMPTS, beam_width=2, max_new_tokens=8, eos_ids=[3])
    np.testing.assert_array_equal(result.tokens, expected.tokens)
    np.testing.assert_array_equal(result.lengths, expected.lengths)
    # Split over devices, the matmuls add in another order: float32 rounding, grown by the 10x weights.
    np.testing.assert_allclose(result.logprobs, expected.logprobs, rtol=1e-5, atol=1e-5)
    if "tensor" in layout:
        expected_beams = sampler.beam_search(config, params, PROMPTS, beam_width=2, max_new_tokens=8, eos_ids=[3])
        np.testing.assert_array_equal(beams.tokens, expected_beams.tokens)
        np.testing.assert_allclose(beams.scores, expected_beams.scores, rtol=1e-5)


def test_sampling_in_the_decode_layout_equals_the_training_layout():
    """The trainer reshards the policy to `rollout.rules` before sampling: same tokens, same log-probs."""
    config = model_lib.get_model_config("tiny")
    params = jax.tree.map(lambda x: x * 10 if x.ndim >= 2 else x, model_lib.init_params(config, jax.random.key(0)))
    request = dict(max_new_tokens=8, num_samples=2, temperature=0.8, top_p=0.9, eos_ids=[3], seed=4)
    mesh = sharding.make_mesh(dict(fsdp=4, tensor=2))
    training_rules, decode_rules = sharding.FSDP_TENSOR_RULES, sharding.get_rules("tensor_decode")
    decode_shardings = runtime.param_shardings(config, mesh, decode_rules)
    assert decode_shardings != runtime.param_shardings(config, mesh, training_rules)
    training_params = jax.device_put(params, runtime.param_shardings(config, mesh, training_rules))
    with sharding.use_mesh(mesh, training_rules):
        expected = sampler.generate(config, training_params, PROMPTS, **request)
    with sharding.use_mesh(mesh, decode_rules):
        decode_params = jax.device_put(training_params, decode_shardings)
        result = sampler.generate(config, decode_params, PROMPTS, **request)
    assert jax.tree.map(lambda x: x.sharding, decode_params) == decode_shardings
    np.testing.assert_array_equal(result.tokens, expected.tokens)
    np.testing.assert_array_equal(result.lengths, expected.lengths)
    np.testing.assert_allclose(result.logprobs, expected.logprobs, atol=1e-5)
