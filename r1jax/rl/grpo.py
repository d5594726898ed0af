"""GRPO-family policy loss and group-relative advantages.

Notation: B completions per batch, T token positions, G prompts ("groups") of N = group_size
completions each, B = G * N, with a prompt's completions contiguous in the batch. A name's
suffix gives its array's shape (`logp_BxT`, `rewards_GxN`). m_it is the loss mask (1 on
completion tokens that are trained on) and L_i = sum_t m_it the sequence's token count.

Advantages (GRPO, "DeepSeekMath", Shao et al. 2024), one per completion:
    A_i = (R_i - mean_group(R)) / (std(R) + eps)
where std is the group's (scale="group"), the whole batch's rewards' (scale="batch", TRL's
`scale_rewards="batch"`), or left out (scale="none", as recommended by
Dr. GRPO, "Understanding R1-Zero-Like Training", Liu et al. 2025: dividing by the group std
over-weights prompts that are almost always or almost never solved).

Per-token loss, A_i broadcast over the completion's tokens:
    r_it = exp(logp_it - old_logp_it)
    l_it = -min(r_it * A_i, clip(r_it, 1 - eps_low, 1 + eps_high) * A_i) + beta * KL_it
The log-ratio is clipped to [-20, 20] before exp (as verl does): far outside any clip range, it keeps a
ratio that would overflow float32 from making the gradient NaN (0 * inf).
eps_high > eps_low is DAPO's "clip-higher" ("DAPO", Yu et al. 2025). The KL to the reference
policy is estimated per sampled token (Schulman, "Approximating KL Divergence", 2020), with
d_it = ref_logp_it - logp_it:
    k1: -d_it                   unbiased, can be negative
    k3: exp(d_it) - d_it - 1    unbiased and >= 0; the one GRPO uses
Both are estimates of the KL's value; as loss terms their gradients are not the KL's gradient. On
the policy's own samples k1's gradient is zero in expectation (beta with k1 only adds noise), and
k3's is that of KL(ref || policy), not KL(policy || ref) (Tang & Munos 2025).

Sequence-level importance ratio (GSPO, "Group Sequence Policy Optimization", Zheng et al. 2025):
    s_i  = exp(sum_t m_it (logp_it - old_logp_it) / L_i)
    s_it = sg[s_i] * exp(logp_it - sg[logp_it])        (sg: stop-gradient)
s_it takes the value s_i, so clipping is decided per sequence, and its gradient is
s_i * grad(logp_it), so every token gets a gradient. This is the paper's GSPO-token form.
Since every aggregation below weights all tokens of one sequence equally, it has exactly the
gradient of the objective written with s_i itself, i.e. GSPO.

Aggregation: loss = sum_it w_it * l_it, with
    grpo        w_it = m_it / (B * max(L_i, 1))          mean over sequences of token means (GRPO)
    token_mean  w_it = m_it / sum_jt m_jt                 token mean over this batch
    dr_grpo     w_it = m_it / (B * max_len)               constant normaliser, no length bias (Dr. GRPO)
    dapo        w_it = m_it / num_items_in_batch          token mean over the global batch (DAPO)
B is this call's row count unless `num_sequences_in_batch` gives the whole optimisation batch's, and
dapo's token count likewise comes from `num_items_in_batch`. With both given for the whole batch, the
grpo, dr_grpo and dapo losses of any split of its rows (gradient-accumulation microbatches,
data-parallel shards, or only the rows with a nonzero advantage) sum exactly to the full-batch loss.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

ADVANTAGE_SCALES = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "token_mean", "dr_grpo", "dapo")
KL_ESTIMATORS = ("k1", "k3")
IMPORTANCE_LEVELS = ("token", "sequence")
MAX_LOG_RATIO = 20.0  # see the module docstring


def _check_choice(name: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {options}, got {value!r}")


def _float_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """At least float32: low-precision log-probs or integer rewards are upcast before exp/means."""
    return jnp.promote_types(dtype, jnp.float32)


def _masked_mean_std(values: jax.Array, valid: jax.Array, axis: int | None) -> tuple[jax.Array, jax.Array]:
    """Mean and population std of `values` where `valid`, keeping `axis`; 0 where nothing is valid."""
    count = jnp.maximum(valid.sum(axis=axis, keepdims=True), 1)
    mean = jnp.where(valid, values, 0.0).sum(axis=axis, keepdims=True) / count
    variance = jnp.where(valid, (values - mean) ** 2, 0.0).sum(axis=axis, keepdims=True) / count
    return mean, jnp.sqrt(variance)


def group_advantages(
    rewards_B: ArrayLike | Sequence[float | None],
    group_size: int,
    *,
    scale: str = "group",
    eps: float = 1e-6,
) -> jax.Array:
    """Group-relative advantages, one per completion; see the module docstring for the formula.

    rewards_B: rewards of B = G * group_size completions, each group contiguous. A missing reward
        (None in a list, NaN in an array) is left out of every mean and std and gets advantage 0.
    scale: "group" divides by the group's std, "batch" by the std of all the batch's rewards,
        "none" does not divide.

    The std is the population std (divide by the count, not count - 1), unlike TRL's unbiased
    torch.std. It is defined for a group with a single valid reward, which missing rewards make
    possible, and it gives each group's advantages unit mean square; the unbiased std
    rescales advantages by sqrt((n - 1) / n). Without a KL term and with whole groups that is a
    learning-rate change; with `beta > 0` it also shifts the weight between policy gradient and KL.

    A group whose valid rewards are all equal gets advantage 0 under every scale: the group
    carries no signal, and the float residue of subtracting its mean must not be divided by eps.

    Jittable with group_size and scale static (list input must be converted outside the trace).
    Returns a float array of shape (B,).
    """
    _check_choice("scale", scale, ADVANTAGE_SCALES)
    if isinstance(rewards_B, (list, tuple)):
        rewards_B = np.array([np.nan if r is None else r for r in rewards_B], dtype=np.float64)
    rewards_B = jnp.asarray(rewards_B)
    rewards_B = rewards_B.astype(_float_dtype(rewards_B.dtype))
    if group_size < 1 or rewards_B.ndim != 1 or rewards_B.shape[0] % group_size != 0:
        raise ValueError(f"rewards_B must be 1-D with length divisible by group_size={group_size}, "
                         f"got shape {rewards_B.shape}")

    rewards_GxN = rewards_B.reshape(-1, group_size)
    valid_GxN = ~jnp.isnan(rewards_GxN)
    group_mean_Gx1, group_std_Gx1 = _masked_mean_std(rewards_GxN, valid_GxN, axis=1)
    centred_GxN = jnp.where(valid_GxN, rewards_GxN, 0.0) - group_mean_Gx1
    if scale == "group":
        advantages_GxN = centred_GxN / (group_std_Gx1 + eps)
    elif scale == "batch":
        _, batch_std = _masked_mean_std(rewards_GxN, valid_GxN, axis=None)
        advantages_GxN = centred_GxN / (batch_std + eps)
    else:
        advantages_GxN = centred_GxN

    # Compare extremes rather than test std == 0, which the float mean's rounding can defeat.
    group_max_Gx1 = jnp.where(valid_GxN, rewards_GxN, -jnp.inf).max(axis=1, keepdims=True)
    group_min_Gx1 = jnp.where(valid_GxN, rewards_GxN, jnp.inf).min(axis=1, keepdims=True)
    informative_GxN = valid_GxN & (group_max_Gx1 > group_min_Gx1)
    return jnp.where(informative_GxN, advantages_GxN, 0.0).reshape(-1)


def _token_weights_BxT(
    mask_BxT: jax.Array,
    loss_type: str,
    max_len: int | None,
    num_items_in_batch: ArrayLike | None,
    num_sequences_in_batch: ArrayLike | None,
) -> jax.Array:
    """The aggregation weights w_it of the module docstring (zero on masked positions)."""
    rows, num_positions = mask_BxT.shape
    batch_size = rows if num_sequences_in_batch is None else num_sequences_in_batch
    if loss_type == "grpo":
        tokens_Bx1 = mask_BxT.sum(axis=1, keepdims=True)
        return mask_BxT / (batch_size * jnp.maximum(tokens_Bx1, 1))
    if loss_type == "token_mean":
        return mask_BxT / jnp.maximum(mask_BxT.sum(), 1)
    if loss_type == "dr_grpo":
        return mask_BxT / (batch_size * (num_positions if max_len is None else max_len))
    total_tokens = mask_BxT.sum() if num_items_in_batch is None else num_items_in_batch
    return mask_BxT / jnp.maximum(total_tokens, 1)


def grpo_loss(
    logp_BxT: jax.Array,
    old_logp_BxT: jax.Array,
    ref_logp_BxT: jax.Array | None,
    advantages_B: jax.Array,
    mask_BxT: jax.Array,
    *,
    loss_type: str = "grpo",
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    beta: float = 0.0,
    kl_estimator: str = "k3",
    max_len: int | None = None,
    importance_level: str = "token",
    num_items_in_batch: ArrayLike | None = None,
    num_sequences_in_batch: ArrayLike | None = None,
    entropy_BxT: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped-surrogate policy loss with optional KL penalty; formulas in the module docstring.

    logp_BxT: log-probabilities of the sampled tokens under the policy being trained.
    old_logp_BxT: the same under the policy that generated them (no gradient flows into it).
    ref_logp_BxT: the same under the reference policy; only read when beta != 0.
    advantages_B: one advantage per completion.
    mask_BxT: bool or 0/1; positions outside it may hold any value, NaN and inf included.
    beta: KL weight, a Python number (it decides whether the KL is computed at all).
    max_len: dr_grpo's constant length normaliser (the generation budget); defaults to T.
    num_items_in_batch: dapo's token count of the global batch; defaults to this batch's count.
    num_sequences_in_batch: grpo's and dr_grpo's B, the global batch's row count; defaults to this batch's.
    entropy_BxT: per-token policy entropy, only reported as a metric.

    Returns (loss, metrics). Every metric is a token mean over this batch's valid tokens:
        clip_fraction_low   A < 0 and r < 1 - epsilon_low: the clipped branch is active (no gradient)
        clip_fraction_high  A > 0 and r > 1 + epsilon_high: likewise on the high side
        ratio_mean          r (under importance_level="sequence", the sequence ratio s_i)
        kl                  KL_it, only when beta != 0
        entropy             only when entropy_BxT is given
    """
    _check_choice("loss_type", loss_type, LOSS_TYPES)
    _check_choice("kl_estimator", kl_estimator, KL_ESTIMATORS)
    _check_choice("importance_level", importance_level, IMPORTANCE_LEVELS)
    if beta != 0 and ref_logp_BxT is None:
        raise ValueError("beta != 0 needs ref_logp_BxT")
    expected_shape = jnp.shape(logp_BxT)
    per_token_inputs = {"old_logp_BxT": old_logp_BxT, "mask_BxT": mask_BxT}
    if beta != 0:
        per_token_inputs["ref_logp_BxT"] = ref_logp_BxT
    if entropy_BxT is not None:
        per_token_inputs["entropy_BxT"] = entropy_BxT
    for name, array in per_token_inputs.items():
        if jnp.shape(array) != expected_shape:
            raise ValueError(f"{name} has shape {jnp.shape(array)}, logp_BxT has {expected_shape}")
    if jnp.shape(advantages_B) != expected_shape[:1]:
        raise ValueError(f"advantages_B has shape {jnp.shape(advantages_B)}, expected {expected_shape[:1]}")

    logp_BxT = jnp.asarray(logp_BxT)
    dtype = _float_dtype(logp_BxT.dtype)
    logp_BxT = logp_BxT.astype(dtype)
    old_logp_BxT = jax.lax.stop_gradient(jnp.asarray(old_logp_BxT, dtype))
    valid_BxT = jnp.asarray(mask_BxT).astype(bool)
    mask_BxT = valid_BxT.astype(dtype)
    advantages_Bx1 = jnp.asarray(advantages_B, dtype)[:, None]

    # Padding may hold inf/NaN, so it is replaced before exp (and before any gradient sees it).
    log_ratio_BxT = jnp.where(valid_BxT, logp_BxT - old_logp_BxT, 0.0)
    if importance_level == "sequence":
        seq_log_ratio_Bx1 = log_ratio_BxT.sum(axis=1, keepdims=True) / jnp.maximum(
            mask_BxT.sum(axis=1, keepdims=True), 1)
        gradient_carrier_BxT = logp_BxT - jax.lax.stop_gradient(logp_BxT)  # value 0, gradient 1
        log_ratio_BxT = jnp.where(
            valid_BxT, jax.lax.stop_gradient(seq_log_ratio_Bx1) + gradient_carrier_BxT, 0.0)
    ratio_BxT = jnp.exp(jnp.clip(log_ratio_BxT, -MAX_LOG_RATIO, MAX_LOG_RATIO))
    clipped_ratio_BxT = jnp.clip(ratio_BxT, 1 - epsilon_low, 1 + epsilon_high)
    token_loss_BxT = -jnp.minimum(ratio_BxT * advantages_Bx1, clipped_ratio_BxT * advantages_Bx1)

    if beta != 0:
        ref_minus_logp_BxT = jnp.where(valid_BxT, jnp.asarray(ref_logp_BxT, dtype) - logp_BxT, 0.0)
        if kl_estimator == "k1":
            kl_BxT = -ref_minus_logp_BxT
        else:
            kl_BxT = jnp.exp(ref_minus_logp_BxT) - ref_minus_logp_BxT - 1
        token_loss_BxT = token_loss_BxT + beta * kl_BxT

    weights_BxT = _token_weights_BxT(mask_BxT, loss_type, max_len, num_items_in_batch, num_sequences_in_batch)
    loss = (weights_BxT * token_loss_BxT).sum()

    num_tokens = jnp.maximum(mask_BxT.sum(), 1)

    def token_mean(values_BxT: jax.Array) -> jax.Array:
        return jax.lax.stop_gradient(jnp.where(valid_BxT, values_BxT, 0.0).sum() / num_tokens)

    metrics = {
        "clip_fraction_low": token_mean((ratio_BxT < 1 - epsilon_low) & (advantages_Bx1 < 0)),
        "clip_fraction_high": token_mean((ratio_BxT > 1 + epsilon_high) & (advantages_Bx1 > 0)),
        "ratio_mean": token_mean(ratio_BxT),
    }
    if beta != 0:
        metrics["kl"] = token_mean(kl_BxT)
    if entropy_BxT is not None:
        metrics["entropy"] = token_mean(jnp.asarray(entropy_BxT, dtype))
    return loss, metrics
