"""Supervised training: packing layout, the completion-only loss, and that training learns."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import model as model_lib
from r1jax import checkpoint, optim, sampler, sft
from r1jax.data.char_tokenizer import EOS, write_char_tokenizer
from r1jax.tokenizer import load_tokenizer

CONFIG = model_lib.get_model_config("tiny", vocab_size=112, hidden_size=32, intermediate_size=64, num_layers=1,
                                    num_heads=2, num_kv_heads=1, head_dim=16)
SEQUENCES = [([5, 6, 7], [8, 9]), ([10], [11, 12, 13]), ([14, 15], [16])]


def test_pack_layout():
    rows = sft.pack(SEQUENCES, seq_len=10, pad_id=0)
    np.testing.assert_array_equal(rows.tokens, [[5, 6, 7, 8, 9, 10, 11, 12, 13, 0], [14, 15, 16, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(rows.segment_ids, [[1, 1, 1, 1, 1, 2, 2, 2, 2, 0], [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(rows.positions, [[0, 1, 2, 3, 4, 0, 1, 2, 3, 0], [0, 1, 2, 0, 0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(rows.loss_mask, [[0, 0, 0, 1, 1, 0, 1, 1, 1, 0], [0, 0, 1, 0, 0, 0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="seq_len"):
        sft.pack(SEQUENCES, seq_len=4, pad_id=0)


def test_loss_is_completion_cross_entropy_of_each_sequence_alone():
    """Packed loss == float64 CE over completion tokens, each sequence run through the model on its own."""
    params = model_lib.init_params(CONFIG, jax.random.key(0))
    rows = sft.pack(SEQUENCES, seq_len=10, pad_id=0)
    loss = sft.completion_loss(CONFIG, params, sft.PackedRows(*map(jnp.asarray, rows)))

    forward = jax.jit(model_lib.forward, static_argnums=0)
    nll = []
    for prompt, completion in SEQUENCES:
        tokens = np.asarray(prompt + completion)
        # Right padding to one length (one compile) cannot change earlier positions of a causal model.
        padded = np.pad(tokens, (0, 10 - len(tokens)))
        logits = np.asarray(forward(CONFIG, params, jnp.asarray(padded[None])))[0].astype(np.float64)
        logprobs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
            - logits.max(-1, keepdims=True)
        for t in range(len(prompt), len(tokens)):
            nll.append(-logprobs[t - 1, tokens[t]])
    np.testing.assert_allclose(float(loss), np.mean(nll), rtol=1e-5)


def test_only_logits_predicting_completion_tokens_get_gradient(monkeypatch):
    # Make the "model" return its params as the logits, so the gradient is d loss / d logits.
    monkeypatch.setattr(sampler.model_lib, "forward", lambda config, params, *args: params)
    rows = sft.PackedRows(*map(jnp.asarray, sft.pack(SEQUENCES, seq_len=10, pad_id=0)))
    logits = jax.random.normal(jax.random.key(1), (2, 10, CONFIG.vocab_size))
    grad = jax.grad(lambda logits: sft.completion_loss(CONFIG, logits, rows))(logits)
    # Logits at t predict token t + 1: they matter exactly when token t + 1 is a completion token.
    predicts_completion = np.zeros((2, 10), bool)
    predicts_completion[:, :-1] = np.asarray(rows.loss_mask)[:, 1:]
    grad_norms = np.abs(np.asarray(grad)).sum(-1)
    assert np.all(grad_norms[~predicts_completion] == 0)
    assert np.all(grad_norms[predicts_completion] > 0)


def test_training_reduces_the_loss(tmp_path):
    tokenizer = load_tokenizer(write_char_tokenizer(str(tmp_path)))
    pairs = [(f"Numbers: {a} {b}.\n<think>", f"{a}+{b}={a + b}</think>{EOS}") for a in range(4) for b in range(4)]
    params = model_lib.init_params(CONFIG, jax.random.key(0))
    before = jax.tree.map(np.array, params)
    result = sft.train(CONFIG, params, pairs, tokenizer, steps=40, batch_size=2, seq_len=64,
                       optimizer_config=optim.optimizer_config(learning_rate=1e-2), seed=0)
    assert len(result.losses) == 40
    assert np.mean(result.losses[-5:]) < 0.5 * np.mean(result.losses[:5])
    # The caller's params are not donated away.
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, params))


def test_a_nan_loss_stops_training_before_it_is_checkpointed(tmp_path, monkeypatch):
    real_make_train_step = sft.make_train_step

    def nan_from_step_3(*args, **kwargs):
        step_fn = real_make_train_step(*args, **kwargs)

        def step(state, *rest):
            state, metrics = step_fn(state, *rest)
            return state, dict(metrics, loss=jnp.where(state["step"] >= 3, jnp.nan, metrics["loss"]))

        return step

    monkeypatch.setattr(sft, "make_train_step", nan_from_step_3)
    tokenizer = load_tokenizer(write_char_tokenizer(str(tmp_path / "tokenizer")))
    pairs = [(f"Numbers: {a}.\n", f"{a}{EOS}") for a in range(8)]
    params = model_lib.init_params(CONFIG, jax.random.key(0))
    with checkpoint.Checkpointer(tmp_path / "checkpoints", save_interval_steps=1, max_to_keep=None) as checkpointer:
        with pytest.raises(optim.TrainingDiverged, match=r"loss is nan at step 3; the last good checkpoint is kept"):
            sft.train(CONFIG, params, pairs, tokenizer, steps=6, batch_size=2, seq_len=32, checkpointer=checkpointer,
                      optimizer_config=optim.optimizer_config(learning_rate=1e-2), seed=0)
        assert checkpointer.all_steps() == [1, 2]
