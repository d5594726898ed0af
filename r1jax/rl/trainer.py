"""`mode: grpo`: R1-Zero-style reinforcement learning with GRPO and its variants.

One step, in the order the code runs it:

1. rollout  - the next prompts of the dataset; `generate` draws `group_size` completions of each.
2. score    - the config's rewards score every completion (each logged on its own) and their
              weighted sum becomes group-relative advantages. With DAPO's dynamic sampling, groups
              whose rewards are all equal are replaced by groups from further prompts.
3. train    - `num_iterations` passes over the batch in minibatches; the sampler's log-probs are the
              old log-probs, recomputed by the trainer with the same function, so the first ratio is 1
              (to float32 rounding, about 1e-6; in bfloat16 compute the sampler's cached decode and the
              trainer's full pass round differently: on the tiny model, ~2e-3 apart on average and up to
              ~3e-2 on a token).
4. log, evaluate on held-out prompts, checkpoint.

The state (params, optimizer state, step, RNG) and the data position are checkpointed with orbax; the
same command in the same workdir resumes. SIGTERM saves and exits (in the pretraining stage too:
`r1jax.pretrain`). A NaN loss stops the run, naming the step, with the last good checkpoint kept.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from r1jax import checkpoint as checkpoint_lib
from r1jax import metrics as metrics_lib
from r1jax import model as model_lib
from r1jax import distributed, optim, plotting, pretrain, runtime, sampler, sharding
from r1jax.data import tasks
from r1jax.rewards import RewardSet
from r1jax.rl import grpo

State = dict[str, Any]  # {"params", "opt_state", "step", "rng"}


@dataclasses.dataclass
class Rollout:
    """One batch of completions, `group_size` consecutive rows per prompt."""

    examples: list[Mapping[str, Any]]  # one per row
    prompt_tokens: list[list[int]]  # one per row
    completions: sampler.SampleResult
    texts: list[str]
    reward_scores: dict[str, np.ndarray]  # reward key -> float per row, NaN where unjudgeable
    total_rewards: np.ndarray
    # Wall time spent sampling and scoring this batch; `collect` sets them for a batch made of several
    # rounds (a selection or concatenation leaves them at 0: parts of one round would count it twice).
    generate_seconds: float = 0.0
    score_seconds: float = 0.0

    def select_groups(self, groups: np.ndarray, group_size: int) -> Rollout:
        rows = (groups[:, None] * group_size + np.arange(group_size)).reshape(-1)
        c = self.completions
        return Rollout(
            examples=[self.examples[r] for r in rows], prompt_tokens=[self.prompt_tokens[r] for r in rows],
            completions=sampler.SampleResult(c.tokens[rows], c.lengths[rows], c.logprobs[rows], c.finished[rows]),
            texts=[self.texts[r] for r in rows], reward_scores={k: v[rows] for k, v in self.reward_scores.items()},
            total_rewards=self.total_rewards[rows])

    @staticmethod
    def concatenate(parts: Sequence[Rollout]) -> Rollout:
        cs = [p.completions for p in parts]
        return Rollout(
            examples=[e for p in parts for e in p.examples], prompt_tokens=[t for p in parts for t in p.prompt_tokens],
            completions=sampler.SampleResult(*(np.concatenate([getattr(c, f) for c in cs])
                                               for f in ("tokens", "lengths", "logprobs", "finished"))),
            texts=[t for p in parts for t in p.texts],
            reward_scores={k: np.concatenate([p.reward_scores[k] for p in parts]) for k in parts[0].reward_scores},
            total_rewards=np.concatenate([p.total_rewards for p in parts]))


# ---------------------------------------------------------------------------------------------
# Training batch layout and the jitted step


def training_batch(rollout: Rollout, advantages_B: np.ndarray, *, mask_truncated: bool, pad_id: int,
                   prompt_bucket_cap: int) -> dict[str, np.ndarray]:
    """Prompt (left-padded to a bucket) + completion rows, with the masks and positions the sampler used."""
    c = rollout.completions
    B = c.tokens.shape[0]
    # Columns past the longest completion are all padding: train on a bucket that covers it (few shapes).
    N = sampler.prompt_bucket(int(c.lengths.max()), c.tokens.shape[1])
    P = sampler.prompt_bucket(max(len(p) for p in rollout.prompt_tokens), prompt_bucket_cap)
    tokens = np.full((B, P + N), pad_id, np.int32)
    positions = np.zeros((B, P + N), np.int32)
    segment_ids = np.zeros((B, P + N), np.int32)
    for row, prompt in enumerate(rollout.prompt_tokens):
        start = P - len(prompt)
        tokens[row, start:P] = prompt
        tokens[row, P:] = c.tokens[row, :N]
        positions[row, start:] = np.arange(P + N - start)
        segment_ids[row, start:] = 1
    mask = (np.arange(N)[None, :] < c.lengths[:, None]).astype(np.float32)
    if mask_truncated:
        mask *= c.finished[:, None]
    return dict(tokens=tokens, positions=positions, segment_ids=segment_ids, mask=mask,
                old_logp=c.logprobs[:, :N].astype(np.float32), advantages=advantages_B.astype(np.float32))


def completion_logprobs(model_config: model_lib.ModelConfig, params, batch: Mapping[str, jax.Array],
                        temperature: float, *, with_entropy: bool = False):
    """Log-probs of the completion tokens (`logp_BxN`), through the sampler's `token_logprobs`."""
    N = batch["old_logp"].shape[1]
    hidden, _ = model_lib.apply(model_config, params, batch["tokens"], batch["positions"], batch["segment_ids"])
    # Only positions that predict completion tokens need vocabulary logits.
    logits_BxNxV = model_lib.logits_from_hidden(model_config, params, hidden[:, -N - 1:-1])
    logp_BxN = sampler.token_logprobs(logits_BxNxV, batch["tokens"][:, -N:], temperature)
    if not with_entropy:
        return logp_BxN, None
    logprobs_all = sampler.scaled_log_softmax(jax.lax.stop_gradient(logits_BxNxV), temperature)
    return logp_BxN, -jnp.sum(jnp.exp(logprobs_all) * logprobs_all, axis=-1)


def make_train_step(model_config: model_lib.ModelConfig, config: ml_collections.ConfigDict,
                    optimizer: optax.GradientTransformation, schedule: optax.Schedule, state_shardings):
    """The jitted update `(state, minibatch, num_items, num_sequences) -> (state, metrics)`.

    `num_items` and `num_sequences` are the token and row counts of the whole minibatch, which may hold
    more rows than `minibatch` (see `trained_minibatch`). The state is donated and stays on `state_shardings`.
    The metrics of `grpo_loss` (entropy, ratio, clip fractions) are token means over the rows of `minibatch`:
    with skipped zero-advantage rows, over the rows trained on.
    """
    g = config.grpo
    # token_mean is dapo over the minibatch's token count. With the minibatch's counts as normalisers every
    # loss type is a sum over rows: exact over microbatches and over a subset of the rows.
    loss_type = "dapo" if g.loss_type == "token_mean" else g.loss_type

    def loss_fn(params, batch, num_items, num_sequences):
        logp, entropy = completion_logprobs(model_config, params, batch, config.rollout.temperature,
                                            with_entropy=True)
        return grpo.grpo_loss(
            logp, batch["old_logp"], batch.get("ref_logp"), batch["advantages"], batch["mask"],
            loss_type=loss_type, epsilon_low=g.epsilon_low, epsilon_high=g.epsilon_high, beta=g.beta,
            kl_estimator=g.kl_estimator, max_len=config.rollout.max_new_tokens, importance_level=g.importance_level,
            num_items_in_batch=num_items, num_sequences_in_batch=num_sequences, entropy_BxT=entropy)

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def microbatch_step(params, microbatch, num_items, num_sequences):
        (loss, metrics), grads = grad_fn(params, microbatch, num_items, num_sequences)
        # Metrics are token means of the microbatch: summed back up by its token count.
        tokens = microbatch["mask"].sum().astype(jnp.float32)
        return loss, jax.tree.map(lambda m: m * tokens, metrics), tokens, grads

    def train_step(state: State, batch: Mapping[str, jax.Array], num_items: jax.Array, num_sequences: jax.Array):
        (loss, metric_sums, tokens, grads), _ = optim.sum_over_microbatches(
            lambda microbatch: microbatch_step(state["params"], microbatch, num_items, num_sequences), batch,
            g.microbatch_size)
        metrics = jax.tree.map(lambda m: m / jnp.maximum(tokens, 1), metric_sums)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads), learning_rate=schedule(state["step"]))
        return dict(state, params=params, opt_state=opt_state, step=state["step"] + 1), metrics

    return jax.jit(train_step, donate_argnums=0, out_shardings=(state_shardings, None))


def trained_minibatch(batch: Mapping[str, np.ndarray], rows: np.ndarray, *, skip_zero_advantage: bool,
                      row_multiple: int) -> tuple[dict[str, np.ndarray], np.float32, np.float32]:
    """The rows of minibatch `rows` the train step runs on, with that minibatch's token and row counts.

    Without a KL term a row whose advantage is 0 (or with no trained token) has a zero gradient, so with
    `skip_zero_advantage` only the other rows are kept (late in a run most groups are all right or all
    wrong); given the whole minibatch's counts, the loss and gradient are unchanged. The kept count is
    padded, with masked copies of a kept row, to a multiple of a quarter of the minibatch that
    `row_multiple` (data shards, microbatch size) divides: few shapes to compile.
    """
    informative = (batch["advantages"][rows] != 0) & (batch["mask"][rows].sum(1) > 0)
    kept = rows[informative] if skip_zero_advantage else rows
    quarter = -(-max(len(rows) // 4, 1) // row_multiple) * row_multiple
    size = min(len(rows), -(-max(len(kept), 1) // quarter) * quarter)
    padding = np.arange(size) >= len(kept)
    picked = np.concatenate([kept, np.full(size - len(kept), kept[-1] if len(kept) else rows[0])])
    minibatch = {k: v[picked] for k, v in batch.items()}
    minibatch["mask"][padding] = 0
    return minibatch, np.float32(batch["mask"][rows].sum()), np.float32(len(rows))


# ---------------------------------------------------------------------------------------------
# The run


class GRPORun:
    """Everything a GRPO run holds between steps; `run()` is the loop."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config = config
        self.workdir = workdir
        self.mesh, self.rules = runtime.mesh_and_rules(config)
        self.model_config = runtime.model_config(config)
        # The sampler's layout (`rollout.rules`); the weights are resharded to it before each rollout.
        self.decode_rules = sharding.get_rules(config.rollout.rules) if config.rollout.rules else self.rules
        self.decode_shardings = runtime.param_shardings(self.model_config, self.mesh, self.decode_rules)
        self.tokenizer = runtime.tokenizer(config, workdir)
        if self.tokenizer.vocab_size > self.model_config.vocab_size:
            raise ValueError(f"the tokenizer has {self.tokenizer.vocab_size} tokens but the model only "
                             f"{self.model_config.vocab_size}; set config.model.vocab_size or use the model's tokenizer")
        with distributed.main_process_first("task data"):  # built under the workdir on first use
            self.task = tasks.load_task(config.data, self.tokenizer, workdir)
        self.rewards = RewardSet(list(config.rewards), num_workers=config.reward_workers)
        self.pad_id = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0
        self.eos_ids = tuple(self.tokenizer.eos_ids)

        self.optimizer, self.schedule = optim.make_optimizer(config.optimizer, config.steps * self._updates_per_step())
        with sharding.use_mesh(self.mesh, self.rules):
            params = runtime.load_or_init_params(config, self.model_config, self.mesh, self.rules)
            if config.pretrain.steps:
                train = self.task.train
                base_dir = pretrain.pretrain_base(config, self.model_config, params, self.tokenizer,
                                                  [train[i] for i in range(len(train))], workdir)
                params = runtime.load_or_init_params(config, self.model_config, self.mesh, self.rules,
                                                     checkpoint=base_dir)
            # A copy: the train step donates the policy's buffers. Taken before any restore, so the
            # reference stays the starting policy when a run resumes.
            self.reference_params = jax.tree.map(jnp.copy, params) if config.grpo.beta > 0 else None
            opt_state = runtime.init_optimizer_state(self.optimizer, params, self.mesh)
        replicated = jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())
        # Made by a jitted function: device_put cannot place a PRNG key on devices of other processes.
        counters = jax.jit(lambda: dict(step=jnp.zeros((), jnp.int32), rng=jax.random.key(config.seed)),
                           out_shardings=replicated)()
        state = dict(params=params, opt_state=opt_state, **counters)
        self.state_shardings = jax.tree.map(lambda x: x.sharding, state)
        self.checkpointer = checkpoint_lib.Checkpointer(
            os.path.join(workdir, "checkpoints"), save_interval_steps=config.checkpoint_every,
            max_to_keep=config.keep_checkpoints)
        self.data_position = 0
        restored_step = self.checkpointer.latest_step()
        # Counted from the checkpoint, not the optimizer: --allow_config_change may change updates per step.
        self.start_step = restored_step or 0
        if restored_step is not None:
            abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state,
                                    self.state_shardings)
            state, metadata = self.checkpointer.restore(abstract)
            self.data_position = int(metadata["data_position"])
            print(f"resumed from step {restored_step} in {self.checkpointer.directory}")
        self.state = state
        # A resumed run rewrites the steps after its checkpoint; drop their earlier records.
        self.writer = metrics_lib.MetricsWriter(
            workdir, resume_step=metrics_lib.first_step_to_write(restored_step),
            enabled=distributed.is_main_process())
        self.train_step = make_train_step(self.model_config, config, self.optimizer, self.schedule,
                                          self.state_shardings)
        self.reference_logprobs = jax.jit(
            lambda params, batch: completion_logprobs(self.model_config, params, batch, config.rollout.temperature)[0])

    # -- rollouts ---------------------------------------------------------------------------

    def _prompts(self) -> Iterator[Mapping[str, Any]]:
        for index, example in self.task.train_examples(seed=self.config.seed, start_index=self.data_position):
            self.data_position = index + 1
            yield example

    def rollout(self, examples: Sequence[Mapping[str, Any]], key: jax.Array, *, num_samples: int,
                temperature: float) -> Rollout:
        r = self.config.rollout
        start = time.perf_counter()
        prompt_tokens = [self.task.prompt_tokens(e) for e in examples]
        with sharding.use_mesh(self.mesh, self.decode_rules):
            # Shards move between devices; in the training layout this is the same buffers, not a copy.
            params = jax.device_put(self.state["params"], self.decode_shardings)
            completions = sampler.generate(
                self.model_config, params, prompt_tokens, max_new_tokens=r.max_new_tokens,
                num_samples=num_samples, temperature=temperature, top_k=r.top_k, top_p=r.top_p, min_p=r.min_p,
                eos_ids=self.eos_ids, stop_strings=tuple(r.stop_strings), tokenizer=self.tokenizer, seed=key,
                max_prompt_len=r.max_prompt_len or None, pad_id=self.pad_id)
        texts = [self.tokenizer.decode_completion(t[:n], self.eos_ids)
                 for t, n in zip(completions.tokens, completions.lengths)]
        generated = time.perf_counter()
        row_examples = [e for e in examples for _ in range(num_samples)]

        # Every process holds every completion (the sampler returns them whole); each scores a share of the
        # rows and gets the others' scores. That splits the scoring (code rewards run tests), and all
        # processes train on the same rewards even where one is not deterministic (a sandbox's time limit).
        def score(rows: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
            return self.rewards.score_batch([texts[r] for r in rows], [row_examples[r] for r in rows],
                                            lengths=completions.lengths[rows].tolist()).as_arrays()

        per_reward, total = distributed.split_rows_across_processes(score, len(texts))
        return Rollout(row_examples, [p for p in prompt_tokens for _ in range(num_samples)], completions, texts,
                       per_reward, total, generate_seconds=generated - start,
                       score_seconds=time.perf_counter() - generated)

    def collect(self, key: jax.Array) -> tuple[Rollout, dict[str, float]]:
        """A step's rollout; with dynamic sampling, groups with equal rewards are replaced while rounds remain."""
        r, G = self.config.rollout, self.config.rollout.group_size
        prompts = self._prompts()
        kept: list[Rollout] = []
        dropped: list[Rollout] = []
        kept_groups = 0
        rounds = 0
        generate_seconds = score_seconds = 0.0
        zero_std_share = 0.0
        while kept_groups < r.prompts_per_step:
            key, round_key = jax.random.split(key)
            # Every round samples a full batch: one compiled shape, as DAPO does.
            examples = [next(prompts) for _ in range(r.prompts_per_step)]
            part = self.rollout(examples, round_key, num_samples=G, temperature=r.temperature)
            generate_seconds += part.generate_seconds
            score_seconds += part.score_seconds
            totals_GxN = part.total_rewards.reshape(-1, G)
            degenerate = np.nanmax(totals_GxN, 1) == np.nanmin(totals_GxN, 1)
            degenerate |= np.isnan(totals_GxN).all(1)
            if rounds == 0:
                zero_std_share = float(degenerate.mean())
            rounds += 1
            if not self.config.grpo.dynamic_sampling:
                return part, dict(zero_std_groups=zero_std_share, sampling_rounds=rounds)
            kept.append(part.select_groups(np.flatnonzero(~degenerate), G))
            dropped.append(part.select_groups(np.flatnonzero(degenerate), G))
            kept_groups += int((~degenerate).sum())
            if rounds >= self.config.grpo.max_sampling_rounds:
                break
        batch = Rollout.concatenate(kept + dropped).select_groups(np.arange(r.prompts_per_step), G)
        batch = dataclasses.replace(batch, generate_seconds=generate_seconds, score_seconds=score_seconds)
        return batch, dict(zero_std_groups=zero_std_share, sampling_rounds=rounds)

    # -- evaluation -------------------------------------------------------------------------

    def evaluate(self) -> dict[str, float]:
        """Greedy and sampled accuracy on the held-out prompts."""
        e = self.config.eval
        examples = self.task.test_examples(e.num_examples)
        results = {}
        for name, temperature in (("", 0.0), ("_sampled", self.config.rollout.temperature)):
            accuracy, lengths = [], []
            for start in range(0, len(examples), e.batch_size):
                rollout = self.rollout(examples[start:start + e.batch_size], jax.random.key(start), num_samples=1,
                                       temperature=temperature)
                accuracy.append(rollout.reward_scores[self.config.accuracy_reward] >= self.config.accuracy_threshold)
                lengths.append(rollout.completions.lengths)
            results[f"eval/accuracy{name}"] = float(np.concatenate(accuracy).mean())
            results[f"eval/response_length{name}"] = float(np.concatenate(lengths).mean())
        return results

    # -- the loop ---------------------------------------------------------------------------

    def train_on(self, rollout: Rollout) -> dict[str, float]:
        c, g = self.config, self.config.grpo
        advantages = np.asarray(grpo.group_advantages(rollout.total_rewards, c.rollout.group_size,
                                                      scale=g.advantage_scale))
        batch = training_batch(rollout, advantages, mask_truncated=g.mask_truncated, pad_id=self.pad_id,
                               prompt_bucket_cap=c.rollout.max_prompt_len or self.model_config.max_position_embeddings)
        row_multiple = int(np.lcm(sharding.data_parallel_size(dict(self.mesh.shape), self.rules),
                                  g.microbatch_size or 1))
        step_metrics, trained_tokens, trained = [], [], 0
        with sharding.use_mesh(self.mesh, self.rules):
            if self.reference_params is not None:
                # A microbatch at a time: the full-vocabulary logits of a whole rollout need not fit at once.
                rows = g.microbatch_size or g.minibatch_size
                batch["ref_logp"] = np.concatenate([distributed.to_host(self.reference_logprobs(
                    self.reference_params, self._on_devices({k: v[start:start + rows] for k, v in batch.items()})))
                    for start in range(0, len(advantages), rows)])
            for _ in range(g.num_iterations):
                for start in range(0, len(advantages), g.minibatch_size):
                    minibatch, num_items, num_sequences = trained_minibatch(
                        batch, np.arange(start, start + g.minibatch_size), skip_zero_advantage=g.beta == 0,
                        row_multiple=row_multiple)
                    self.state, metrics = self.train_step(self.state, self._on_devices(minibatch), num_items,
                                                          num_sequences)
                    step_metrics.append(metrics)
                    trained_tokens.append(minibatch["mask"].sum())
                    trained += int((minibatch["mask"].sum(1) > 0).sum())
        averaged = _average_step_metrics(jax.device_get(step_metrics), trained_tokens)
        averaged["trained_rows"] = trained / (g.num_iterations * len(advantages))
        return averaged

    def _on_devices(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array]:
        return distributed.host_to_global(dict(batch), {k: sharding.batch_sharding(self.mesh, self.rules, v.ndim)
                                                        for k, v in batch.items()})

    def rollout_metrics(self, rollout: Rollout) -> dict[str, float]:
        c = rollout.completions
        metrics = {f"reward/{k}": float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                   for k, v in rollout.reward_scores.items()}
        metrics["reward/total"] = float(np.nanmean(rollout.total_rewards))
        accuracy_scores = rollout.reward_scores[self.config.accuracy_reward]
        judged = accuracy_scores[~np.isnan(accuracy_scores)]  # as reward/<name>: unjudgeable completions left out
        metrics["accuracy"] = float(np.mean(judged >= self.config.accuracy_threshold)) if judged.size else float("nan")
        metrics["response_length/mean"] = float(c.lengths.mean())
        metrics["response_length/max"] = float(c.lengths.max())
        metrics["truncated"] = float(1 - c.finished.mean())
        return metrics

    def run(self) -> dict[str, Any]:
        c = self.config
        step = self.start_step
        first_eval = None
        last_eval: dict[str, float] = {}
        try:
            with checkpoint_lib.PreemptionGuard() as preemption:
                if step == 0:
                    first_eval = self.evaluate()
                    self.writer.write(0, first_eval)
                    print(_format_metrics(0, first_eval))
                    if preemption.stop_agreed():  # nothing trained yet: the next run starts over
                        print("preempted during the first evaluation, exiting")
                        return {"first_eval": first_eval, "final_eval": last_eval, "steps": 0}
                while step < c.steps:
                    step += 1
                    last_eval = self._step(step) or last_eval
                    # Read once, after the step: a SIGTERM during it still forces this save.
                    stop = preemption.stop_agreed()
                    self.checkpointer.save(step, self.state, {"data_position": self.data_position},
                                           force=step == c.steps or stop)
                    if stop:
                        print(f"preempted: saved step {step}, exiting")
                        break
        finally:
            # Also on errors: an async save in flight completes, and metrics reach the disk.
            self.checkpointer.wait_until_finished()
            self.writer.close()
            self.rewards.close()
        return {"first_eval": first_eval, "final_eval": last_eval, "steps": step}

    def _step(self, step: int) -> dict[str, float]:
        """One GRPO step: rollout, update, log. Returns the evaluation if one ran."""
        c = self.config
        key = jax.random.fold_in(self.state["rng"], step)
        t0 = time.perf_counter()
        rollout, sampling = self.collect(key)
        t1 = time.perf_counter()
        train_metrics = self.train_on(rollout)
        if not np.isfinite(train_metrics["loss"]):  # before this step's save: a diverged state is never kept
            raise optim.TrainingDiverged(
                f"loss is {train_metrics['loss']} at step {step}; the last good checkpoint is kept in "
                f"{self.checkpointer.directory}. Lower optimizer.learning_rate or check the rewards.")
        t2 = time.perf_counter()
        metrics = {**self.rollout_metrics(rollout), **sampling, **train_metrics,
                   "time/rollout_s": t1 - t0, "time/generate_s": rollout.generate_seconds,
                   "time/score_s": rollout.score_seconds, "time/train_s": t2 - t1,
                   "tokens_per_s": float(rollout.completions.lengths.sum()) / (t2 - t0)}
        evaluation = {}
        if step == c.steps or (c.eval.every and step % c.eval.every == 0):
            evaluation = self.evaluate()
            metrics.update(evaluation)
        self.writer.write(step, metrics)
        if c.log_samples_every and step % c.log_samples_every == 0:
            self.writer.write_texts(step, {f"sample_{i}": t for i, t in enumerate(rollout.texts[:4])})
        print(_format_metrics(step, metrics))
        return evaluation

    def _updates_per_step(self) -> int:
        c = self.config
        return c.grpo.num_iterations * (c.rollout.prompts_per_step * c.rollout.group_size // c.grpo.minibatch_size)


def _average_step_metrics(step_metrics: Sequence[Mapping[str, np.ndarray]],
                          trained_tokens: Sequence[float]) -> dict[str, float]:
    """Means over a step's updates; the loss's token means are weighted by the tokens each update trained."""
    per_update = ("loss", "grad_norm", "learning_rate")
    weights = np.asarray(trained_tokens, np.float64)
    weights = weights / weights.sum() if weights.sum() else np.full(len(weights), 1 / len(weights))
    return {k: float(np.mean([m[k] for m in step_metrics])) if k in per_update
            else float(np.dot(weights, [m[k] for m in step_metrics])) for k in step_metrics[0]}


def _format_metrics(step: int, metrics: Mapping[str, float]) -> str:
    shown = ("eval/accuracy", "reward/total", "accuracy", "response_length/mean", "kl", "loss", "tokens_per_s")
    parts = [f"{k}={metrics[k]:.4g}" for k in shown if k in metrics]
    return f"step {step}: " + " ".join(parts)


def _logged_eval(workdir: str, step: int) -> dict[str, float] | None:
    """The evaluation metrics `metrics.jsonl` holds for `step`, if it holds any."""
    for record in metrics_lib.read_metrics(workdir):
        evaluation = {key: value for key, value in record.items() if key.startswith("eval/")}
        if record["step"] == step and evaluation:
            return evaluation
    return None


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains, exports the final policy in Hugging Face format, draws the curves and prints a summary."""
    start = time.perf_counter()
    try:
        grpo_run = GRPORun(config, workdir)
    except checkpoint_lib.StoppedBySignal as stopped:  # in the pretraining stage, which saved its progress
        print(stopped, flush=True)
        return {"first_eval": None, "final_eval": {}, "steps": 0, "stopped": True}
    summary = grpo_run.run()
    # A resumed run did not evaluate at step 0 (nor at the end, if it was already finished): earlier runs logged it.
    summary["first_eval"] = summary["first_eval"] or _logged_eval(workdir, 0)
    summary["final_eval"] = summary["final_eval"] or _logged_eval(workdir, summary["steps"]) or {}
    if summary["steps"] < config.steps:
        return dict(summary, stopped=True)  # preempted: the next run in this workdir continues
    export_dir = runtime.export_final_model(workdir, grpo_run.model_config, grpo_run.state["params"],
                                            grpo_run.tokenizer)
    if not distributed.is_main_process():
        return dict(summary, export_dir=export_dir)
    curves = plotting.plot_metrics(os.path.join(workdir, "metrics.jsonl"), os.path.join(workdir, "curves.png"))
    before = (summary["first_eval"] or {}).get("eval/accuracy", float("nan"))
    after = summary["final_eval"].get("eval/accuracy", float("nan"))
    count = min(config.eval.num_examples, len(grpo_run.task.test))
    rows = [("held-out accuracy (greedy, %d problems)" % count, f"{before:.3f} -> {after:.3f}"),
            ("curves", curves), ("checkpoints", grpo_run.checkpointer.directory), ("final policy (HF)", export_dir)]
    pretrain_seconds = pretrain.pretrain_seconds(workdir)
    if config.pretrain.steps and pretrain_seconds is not None:
        rows.append(("base model (pretrained in this run)",
                     f"{pretrain.base_model_dir(workdir)} ({config.pretrain.steps} steps, {pretrain_seconds:.0f} s)"))
    rows.append(("wall time of this invocation", f"{time.perf_counter() - start:.0f} s"))
    width = max(len(name) for name, _ in rows)
    print("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    return dict(summary, curves=curves, export_dir=export_dir)
