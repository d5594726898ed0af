"""Tests for r1jax.rl.grpo against plain-loop float64 NumPy references written here."""
import functools
import math

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

from r1jax.rl.grpo import (
    IMPORTANCE_LEVELS,
    KL_ESTIMATORS,
    LOSS_TYPES,
    group_advantages,
    grpo_loss,
)

# Deterministic examples so a shared CI run never flakes; no example database in the tree.
FEW_EXAMPLES = settings(max_examples=15, deadline=None, derandomize=True, database=None)
EPS_LOW, EPS_HIGH = 0.2, 0.28


# ----------------------------------------------------------------------------- references


def reference_advantages(rewards, group_size, scale, eps=1e-6):
    """Loop version of group_advantages: None is missing, population std, constant group -> 0."""
    all_valid = [r for r in rewards if r is not None]
    batch_mean = sum(all_valid) / max(len(all_valid), 1)
    batch_std = math.sqrt(sum((r - batch_mean) ** 2 for r in all_valid) / max(len(all_valid), 1))
    advantages = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start:start + group_size]
        valid = [r for r in group if r is not None]
        for r in group:
            if r is None or len(set(valid)) < 2:
                advantages.append(0.0)
                continue
            mean = sum(valid) / len(valid)
            std = math.sqrt(sum((v - mean) ** 2 for v in valid) / len(valid))
            divisor = {"group": std + eps, "batch": batch_std + eps, "none": 1.0}[scale]
            advantages.append((r - mean) / divisor)
    return np.array(advantages)


def reference_loss(logp, old_logp, ref_logp, advantages, mask, *, loss_type, importance_level,
                   kl_estimator, beta, max_len=None, num_items_in_batch=None, num_sequences_in_batch=None,
                   entropy=None):
    """Token-by-token float64 loss and metrics; padding entries are never read."""
    rows, num_positions = mask.shape
    batch_size = num_sequences_in_batch or rows
    lengths = [sum(1 for t in range(num_positions) if mask[i][t]) for i in range(rows)]
    total_tokens = sum(lengths)
    loss = 0.0
    sums = dict(clip_fraction_low=0.0, clip_fraction_high=0.0, ratio_mean=0.0, kl=0.0, entropy=0.0)
    for i in range(rows):
        if importance_level == "sequence":
            log_ratio_sum = sum(logp[i][t] - old_logp[i][t] for t in range(num_positions) if mask[i][t])
            sequence_ratio = math.exp(log_ratio_sum / max(lengths[i], 1))
        for t in range(num_positions):
            if not mask[i][t]:
                continue
            if importance_level == "sequence":
                ratio = sequence_ratio
            else:
                ratio = math.exp(logp[i][t] - old_logp[i][t])
            clipped = min(max(ratio, 1 - EPS_LOW), 1 + EPS_HIGH)
            a = advantages[i]
            surrogate = -min(ratio * a, clipped * a)
            kl = 0.0
            if beta:
                log_ref_over_policy = ref_logp[i][t] - logp[i][t]
                if kl_estimator == "k1":
                    kl = -log_ref_over_policy
                else:
                    kl = math.exp(log_ref_over_policy) - log_ref_over_policy - 1
            if loss_type == "grpo":
                normaliser = batch_size * lengths[i]
            elif loss_type == "token_mean":
                normaliser = total_tokens
            elif loss_type == "dr_grpo":
                normaliser = batch_size * (max_len or num_positions)
            else:
                normaliser = num_items_in_batch or total_tokens
            loss += (surrogate + beta * kl) / normaliser
            sums["clip_fraction_low"] += ratio < 1 - EPS_LOW and a < 0
            sums["clip_fraction_high"] += ratio > 1 + EPS_HIGH and a > 0
            sums["ratio_mean"] += ratio
            sums["kl"] += kl
            sums["entropy"] += entropy[i][t] if entropy is not None else 0.0
    metrics = {name: total / max(total_tokens, 1) for name, total in sums.items()}
    return loss, metrics


# ----------------------------------------------------------------------------- data


def make_batch(seed=0):
    """Float64 batch whose ratios hit both clip sides at token and at sequence level.

    The per-sequence log-ratio offsets push whole sequences past the clip range, so GSPO's
    sequence ratios clip too; row 1 has a hole in its mask; row 5 is empty.
    """
    rng = np.random.default_rng(seed)
    shape = (6, 8)
    mask = np.arange(shape[1]) < np.array([8, 5, 3, 6, 1, 0])[:, None]
    mask[1, 2] = False
    logp = -rng.uniform(0.1, 3.0, shape)
    offsets = np.array([0.45, -0.45, 0.05, -0.35, 0.3, 0.0])[:, None]
    old_logp = logp - offsets - 0.3 * rng.standard_normal(shape)
    ref_logp = logp + 0.4 * rng.standard_normal(shape)
    advantages = np.array([1.2, -0.8, 0.5, 0.9, -1.1, 0.3])
    entropy = rng.uniform(0.0, 2.0, shape)
    return logp, old_logp, ref_logp, advantages, mask, entropy


def with_padding(array, mask, fill):
    return np.where(mask, array, fill)


KL_SETTINGS = [("k1", 0.0), ("k3", 0.0), ("k1", 0.05), ("k3", 0.05)]


# ----------------------------------------------------------------------------- grpo_loss


@pytest.mark.parametrize("kl_estimator,beta", KL_SETTINGS)
@pytest.mark.parametrize("importance_level", IMPORTANCE_LEVELS)
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_loss_matches_reference(loss_type, importance_level, kl_estimator, beta):
    logp, old_logp, ref_logp, advantages, mask, entropy = make_batch()
    expected_loss, expected_metrics = reference_loss(
        logp, old_logp, ref_logp, advantages, mask, loss_type=loss_type,
        importance_level=importance_level, kl_estimator=kl_estimator, beta=beta, entropy=entropy)
    assert expected_metrics["clip_fraction_low"] > 0 and expected_metrics["clip_fraction_high"] > 0

    # Garbage in the padding and ref_logp=None when beta == 0: neither may be read.
    loss, metrics = grpo_loss(
        jnp.asarray(with_padding(logp, mask, -np.inf), jnp.float32),
        jnp.asarray(with_padding(old_logp, mask, np.nan), jnp.float32),
        jnp.asarray(with_padding(ref_logp, mask, np.nan), jnp.float32) if beta else None,
        jnp.asarray(advantages, jnp.float32), jnp.asarray(mask),
        loss_type=loss_type, epsilon_low=EPS_LOW, epsilon_high=EPS_HIGH, beta=beta,
        kl_estimator=kl_estimator, importance_level=importance_level, entropy_BxT=jnp.asarray(entropy))

    np.testing.assert_allclose(loss, expected_loss, rtol=2e-5, atol=1e-6)
    assert set(metrics) == {"clip_fraction_low", "clip_fraction_high", "ratio_mean", "entropy"} | (
        {"kl"} if beta else set())
    for name, value in metrics.items():
        np.testing.assert_allclose(value, expected_metrics[name], rtol=2e-5, atol=1e-6, err_msg=name)


def test_explicit_normalisers():
    logp, old_logp, ref_logp, advantages, mask, _ = make_batch()
    for loss_type, options in [("dr_grpo", dict(max_len=20)), ("dapo", dict(num_items_in_batch=57)),
                               ("grpo", dict(num_sequences_in_batch=11)),
                               ("dr_grpo", dict(max_len=20, num_sequences_in_batch=11))]:
        expected, _ = reference_loss(logp, old_logp, ref_logp, advantages, mask, loss_type=loss_type,
                                     importance_level="token", kl_estimator="k3", beta=0.0, **options)
        loss, _ = grpo_loss(jnp.asarray(logp), jnp.asarray(old_logp), None, jnp.asarray(advantages),
                            jnp.asarray(mask), loss_type=loss_type, epsilon_low=EPS_LOW,
                            epsilon_high=EPS_HIGH, **options)
        np.testing.assert_allclose(loss, expected, rtol=2e-5)


@pytest.mark.parametrize("importance_level", IMPORTANCE_LEVELS)
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_gradient_matches_finite_differences(loss_type, importance_level):
    """jax.grad equals central differences of the forward value; for GSPO this shows that the
    stop-gradient form gives the gradient of the objective written with the sequence ratio."""
    logp, old_logp, ref_logp, advantages, mask, _ = make_batch(seed=1)
    token_ratio = np.exp(logp - old_logp)
    sequence_ratio = np.exp((mask * (logp - old_logp)).sum(1) / np.maximum(mask.sum(1), 1))
    for ratio in (token_ratio[mask], sequence_ratio):  # stay clear of the clip kinks
        assert np.min(np.abs(ratio[:, None] - [1 - EPS_LOW, 1 + EPS_HIGH])) > 1e-3

    with jax.enable_x64(True):
        def loss_of(logp_BxT):
            return grpo_loss(logp_BxT, old_logp, ref_logp, advantages, mask, loss_type=loss_type,
                             epsilon_low=EPS_LOW, epsilon_high=EPS_HIGH, beta=0.1,
                             kl_estimator="k3", importance_level=importance_level)[0]

        logp_BxT = jnp.asarray(logp)
        gradient_BxT = jax.jit(jax.grad(loss_of))(logp_BxT)
        step = 1e-6
        steps_NxBxT = step * jnp.eye(logp.size).reshape(logp.size, *logp.shape)
        batched_loss = jax.jit(jax.vmap(loss_of))
        finite_difference_BxT = (batched_loss(logp_BxT + steps_NxBxT)
                                 - batched_loss(logp_BxT - steps_NxBxT)).reshape(logp.shape) / (2 * step)
        assert gradient_BxT.dtype == jnp.float64
    np.testing.assert_allclose(gradient_BxT, finite_difference_BxT, rtol=1e-6, atol=1e-9)
    assert np.all(np.asarray(gradient_BxT)[~mask] == 0)


@pytest.mark.parametrize("importance_level", IMPORTANCE_LEVELS)
def test_dapo_microbatch_losses_sum_to_full_batch_loss(importance_level):
    logp, old_logp, ref_logp, advantages, mask, _ = make_batch(seed=2)
    options = dict(loss_type="dapo", beta=0.05, importance_level=importance_level)

    @jax.jit
    def loss_and_gradient(logp_BxT, old_logp_BxT, ref_logp_BxT, advantages_B, mask_BxT, num_items_in_batch):
        return jax.value_and_grad(lambda lp: grpo_loss(
            lp, old_logp_BxT, ref_logp_BxT, advantages_B, mask_BxT, num_items_in_batch=num_items_in_batch,
            **options)[0])(logp_BxT)

    def rows_loss_and_gradient(rows, num_items_in_batch=None):
        return loss_and_gradient(jnp.asarray(logp[rows], jnp.float32), old_logp[rows], ref_logp[rows],
                                 advantages[rows], mask[rows], num_items_in_batch)

    full_loss, full_gradient = rows_loss_and_gradient(slice(None))
    total_tokens = int(mask.sum())
    micro_losses, micro_gradients = zip(*(rows_loss_and_gradient(rows, total_tokens)
                                          for rows in (slice(0, 2), slice(2, None))))
    np.testing.assert_allclose(sum(micro_losses), full_loss, rtol=1e-6)
    np.testing.assert_allclose(np.concatenate(micro_gradients), full_gradient, rtol=1e-6, atol=1e-9)


def expected_weights(mask, loss_type):
    """w_it written out per loss type, for the unit-ratio gradient property."""
    batch_size, num_positions = mask.shape
    weights = np.zeros(mask.shape)
    for i in range(batch_size):
        for t in range(num_positions):
            if mask[i, t]:
                weights[i, t] = 1 / {
                    "grpo": batch_size * mask[i].sum(),
                    "token_mean": mask.sum(),
                    "dr_grpo": batch_size * num_positions,
                    "dapo": mask.sum(),
                }[loss_type]
    return weights


@st.composite
def masked_batches(draw):
    batch_size = draw(st.integers(1, 4))
    num_positions = draw(st.integers(1, 6))
    mask = np.array(draw(st.lists(st.booleans(), min_size=batch_size * num_positions,
                                  max_size=batch_size * num_positions))).reshape(batch_size, num_positions)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    logp = -rng.uniform(0.05, 4.0, mask.shape)
    old_logp = logp - 0.5 * rng.standard_normal(mask.shape)
    ref_logp = logp - 0.5 * rng.standard_normal(mask.shape)
    advantages = rng.standard_normal(batch_size)
    return logp, old_logp, ref_logp, advantages, mask


# Hypothesis draws a new shape almost every example, and one jit compile per example is far
# cheaper than eager JAX compiling each op for the new shape.
@functools.partial(jax.jit, static_argnames=("loss_type", "importance_level"))
def unit_ratio_gradient(logp_BxT, advantages_B, mask_BxT, *, loss_type, importance_level):
    return jax.grad(lambda lp: grpo_loss(lp, lp, None, advantages_B, mask_BxT, loss_type=loss_type,
                                         importance_level=importance_level)[0])(logp_BxT)


@functools.partial(jax.jit, static_argnames=("loss_type", "importance_level", "kl_estimator", "beta"))
def loss_metrics_and_gradient(logp_BxT, old_logp_BxT, ref_logp_BxT, advantages_B, mask_BxT, *,
                              loss_type, importance_level, kl_estimator, beta):
    def loss_of(lp):
        return grpo_loss(lp, old_logp_BxT, ref_logp_BxT, advantages_B, mask_BxT, loss_type=loss_type,
                         epsilon_low=EPS_LOW, epsilon_high=EPS_HIGH, beta=beta,
                         kl_estimator=kl_estimator, importance_level=importance_level)
    return jax.value_and_grad(loss_of, has_aux=True)(logp_BxT)


@FEW_EXAMPLES
@given(masked_batches(), st.sampled_from(LOSS_TYPES), st.sampled_from(IMPORTANCE_LEVELS))
def test_unit_ratio_gradient_is_minus_advantage_times_weight(batch, loss_type, importance_level):
    logp, _, _, advantages, mask = batch
    gradient_BxT = unit_ratio_gradient(jnp.asarray(logp, jnp.float32), advantages, mask,
                                       loss_type=loss_type, importance_level=importance_level)
    expected = -advantages[:, None] * expected_weights(mask, loss_type)
    np.testing.assert_allclose(gradient_BxT, expected, rtol=1e-5, atol=1e-7)


@FEW_EXAMPLES
@given(masked_batches(), st.sampled_from(LOSS_TYPES), st.sampled_from(IMPORTANCE_LEVELS),
       st.sampled_from(KL_SETTINGS))
def test_random_masks_match_reference_and_ignore_padding(batch, loss_type, importance_level, kl_setting):
    logp, old_logp, ref_logp, advantages, mask = batch
    kl_estimator, beta = kl_setting
    options = dict(loss_type=loss_type, importance_level=importance_level, kl_estimator=kl_estimator,
                   beta=beta)
    expected_loss, expected_metrics = reference_loss(logp, old_logp, ref_logp, advantages, mask, **options)
    (loss, metrics), gradient_BxT = loss_metrics_and_gradient(
        jnp.asarray(with_padding(logp, mask, np.nan), jnp.float32), with_padding(old_logp, mask, np.inf),
        with_padding(ref_logp, mask, np.nan), advantages, mask, **options)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-4, atol=1e-5)
    assert "entropy" not in metrics and ("kl" in metrics) == bool(beta)
    for name, value in metrics.items():
        np.testing.assert_allclose(value, expected_metrics[name], rtol=1e-4, atol=1e-5, err_msg=name)
    assert np.all(np.isfinite(gradient_BxT)) and np.all(np.asarray(gradient_BxT)[~mask] == 0)


def test_jit_with_traced_token_count():
    logp, old_logp, _, advantages, mask, _ = make_batch()
    jitted = jax.jit(lambda lp, n: grpo_loss(lp, old_logp, None, advantages, mask, loss_type="dapo",
                                             num_items_in_batch=n)[0])
    eager = grpo_loss(logp, old_logp, None, advantages, mask, loss_type="dapo", num_items_in_batch=40)[0]
    np.testing.assert_allclose(jitted(jnp.asarray(logp, jnp.float32), jnp.int32(40)), eager, rtol=1e-6)


@pytest.mark.parametrize("importance_level", IMPORTANCE_LEVELS)
def test_a_ratio_beyond_float32_keeps_loss_and_gradient_finite(importance_level):
    """exp(100) overflows float32; unclipped, the clipped branch's zero gradient times inf was NaN."""
    old_logp = jnp.full((2, 3), -100.0)
    logp = jnp.asarray([[0.0, -1.0, -2.0], [-0.5, -1.5, -2.5]])
    loss_of = lambda lp: grpo_loss(lp, old_logp, None, jnp.asarray([1.0, -1.0]), jnp.ones((2, 3)),  # noqa: E731
                                   importance_level=importance_level)[0]
    loss, grad = jax.value_and_grad(loss_of)(logp)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert np.all(np.asarray(grad)[0] == 0)  # positive advantage: the clipped branch, no gradient


@pytest.mark.parametrize("option,valid", [("loss_type", LOSS_TYPES), ("kl_estimator", KL_ESTIMATORS),
                                          ("importance_level", IMPORTANCE_LEVELS)])
def test_unknown_option_names_valid_ones(option, valid):
    logp_BxT = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=option) as error:
        grpo_loss(logp_BxT, logp_BxT, logp_BxT, jnp.zeros(2), jnp.ones((2, 3)), **{option: "bogus"})
    assert all(name in str(error.value) for name in valid)


def test_kl_without_reference_is_rejected():
    logp_BxT = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp_BxT, logp_BxT, None, jnp.zeros(2), jnp.ones((2, 3)), beta=0.1)


# ----------------------------------------------------------------------------- group_advantages

jitted_advantages = jax.jit(group_advantages, static_argnames=("group_size", "scale"))

REWARDS_WITH_GAPS = [1.0, 0.0, 0.5, None,       # a missing reward
                     None, None, None, None,    # nothing valid
                     0.9, 0.9, None, 0.9,       # all equal, and the float32 mean of 0.9s is not 0.9
                     2.0, 3.0, 5.0, 7.0,
                     None, 4.0, None, None]     # one valid reward


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_advantages_match_reference(scale):
    expected = reference_advantages(REWARDS_WITH_GAPS, 4, scale)
    as_nan = np.array([np.nan if r is None else r for r in REWARDS_WITH_GAPS])
    for advantages in (group_advantages(REWARDS_WITH_GAPS, 4, scale=scale),
                       group_advantages(as_nan, 4, scale=scale),
                       jitted_advantages(jnp.asarray(as_nan, jnp.float32), group_size=4, scale=scale)):
        np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-6)
        assert np.all(np.asarray(advantages)[8:12] == 0)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_constant_rewards_give_zero_advantages(scale):
    for rewards in ([0.9] * 6, [1, 1, 1, 0, 0, 0], np.full(6, 1 / 3, np.float32)):
        advantages = group_advantages(rewards, 3, scale=scale)
        assert advantages.dtype == jnp.float32 and np.all(np.asarray(advantages) == 0)


def test_advantages_reject_bad_arguments():
    with pytest.raises(ValueError, match="'group', 'batch', 'none'"):
        group_advantages([1.0, 0.0], 2, scale="std")
    with pytest.raises(ValueError, match="divisible"):
        group_advantages([1.0, 0.0, 1.0], 2)


@FEW_EXAMPLES
@given(st.integers(1, 5), st.integers(1, 4), st.data())
def test_group_scaled_advantages_are_standardised(group_size, num_groups, data):
    rewards = data.draw(st.lists(st.sampled_from([None, 0.0, 0.25, 1.0, -2.0]),
                                 min_size=group_size * num_groups, max_size=group_size * num_groups))
    as_nan = jnp.asarray([np.nan if r is None else r for r in rewards], jnp.float32)
    advantages = np.asarray(jitted_advantages(as_nan, group_size=group_size))
    np.testing.assert_allclose(advantages, reference_advantages(rewards, group_size, "group"),
                               rtol=1e-5, atol=1e-6)
    for start in range(0, len(rewards), group_size):
        valid = [start + j for j in range(group_size) if rewards[start + j] is not None]
        if len(set(rewards[k] for k in valid)) > 1:
            np.testing.assert_allclose(advantages[valid].mean(), 0, atol=1e-6)
            np.testing.assert_allclose((advantages[valid] ** 2).mean(), 1, rtol=1e-4)
