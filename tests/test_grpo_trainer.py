"""GRPO trainer: the exact first ratio, a whole run with its files, and resuming to identical parameters."""

import os
import sys

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import numpy as np
import optax
import pytest
from flax import linen as nn
from interrupted import kill_after_checkpoint

from r1jax import aot, optim, runtime, sampler, sharding
from r1jax import metrics as metrics_lib
from r1jax import model as model_lib
from r1jax.config import load_config_file
from r1jax.rl import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The smoke runs here, in this process and on the command line. No pretraining stage (time; test_pretrain.py
# tests that stage).
SMOKE_CHANGES = {"grpo.dynamic_sampling": True, "grpo.max_sampling_rounds": 2, "grpo.beta": 0.04, "eval.every": 0,
                 "pretrain.steps": 0}


def _smoke_config(**changes):
    config = load_config_file(os.path.join(REPO, "configs", "countdown_tiny.py:smoke"))
    config.update_from_flattened_dict({**SMOKE_CHANGES, **changes})
    return config


def test_trainer_recomputes_the_sampler_logprobs_exactly():
    config = model_lib.get_model_config("tiny-qwen3")
    params = model_lib.init_params(config, jax.random.key(0))
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13, 14], [15]]
    completions = sampler.generate(config, params, prompts, max_new_tokens=12, num_samples=2, temperature=0.7,
                                   seed=3, eos_ids=(1,))
    rows = [p for p in prompts for _ in range(2)]
    rollout = trainer.Rollout([{}] * 6, rows, completions, [""] * 6, {}, np.zeros(6))
    batch = trainer.training_batch(rollout, np.zeros(6), mask_truncated=False, pad_id=0, prompt_bucket_cap=64)
    logp, entropy = trainer.completion_logprobs(config, params, batch, 0.7, with_entropy=True)
    mask = batch["mask"] > 0
    assert mask.sum() > 12
    assert np.abs(np.asarray(logp)[mask] - completions.logprobs[:, :mask.shape[1]][mask]).max() <= 1e-5
    assert mask.sum() == completions.lengths.sum()  # the trimmed columns held no completion token
    assert np.all(np.asarray(entropy) >= 0)


# Each loss type normalised by the whole minibatch's counts: accumulating microbatches, dropping the rows
# whose advantage is 0, and both, must give the whole minibatch's update. Each alone for one loss type; the
# others, whose normalisers are simpler, with both at once (a train step compile each: time).
@pytest.mark.parametrize("loss_type,variants", [
    ("grpo", ((2, False), (0, True), (2, True))),
    ("dr_grpo", ((2, True),)),
    ("token_mean", ((2, True),)),
])
def test_microbatches_and_skipped_zero_advantage_rows_give_the_whole_minibatch_update(loss_type, variants):
    from r1jax.config import grpo_config

    model_config = model_lib.get_model_config("tiny-qwen3")
    params = model_lib.init_params(model_config, jax.random.key(0))
    rng = np.random.default_rng(0)
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12], [15], [3, 4]] * 2
    lengths = rng.integers(1, 11, 8)
    completions = sampler.SampleResult(tokens=rng.integers(4, 200, (8, 10)).astype(np.int32), lengths=lengths,
                                       logprobs=rng.uniform(-5, -1, (8, 10)).astype(np.float32),
                                       finished=lengths < 10)
    rollout = trainer.Rollout([{}] * 8, prompts, completions, [""] * 8, {}, np.zeros(8))
    advantages = rng.normal(size=8).astype(np.float32)
    advantages[[1, 2, 6]] = 0  # e.g. groups whose completions all got the same reward
    batch = trainer.training_batch(rollout, advantages, mask_truncated=False, pad_id=0, prompt_bucket_cap=64)

    results, reported = [], {}
    for microbatch_size, skip in ((0, False), *variants):
        config = grpo_config()
        config.grpo.update(loss_type=loss_type, microbatch_size=microbatch_size)
        minibatch, num_items, num_sequences = trainer.trained_minibatch(
            batch, np.arange(8), skip_zero_advantage=skip, row_multiple=max(microbatch_size, 1))
        assert len(minibatch["mask"]) == (6 if skip else 8)  # 5 kept rows, padded to quarters of 8 rows
        assert num_items == batch["mask"].sum() and num_sequences == 8
        optimizer = optax.sgd(1.0)  # the update is the gradient itself, compared without Adam's rescaling
        state = dict(params=jax.tree.map(np.copy, params), opt_state=optimizer.init(params), step=np.int32(0),
                     rng=jax.random.key(0))
        step = trainer.make_train_step(model_config, config, optimizer, optax.constant_schedule(1.0), None)
        new_state, metrics = step(state, minibatch, num_items, num_sequences)
        results.append((jax.device_get(new_state["params"]), float(metrics["loss"]), float(metrics["grad_norm"])))
        reported[microbatch_size, skip] = {k: float(v) for k, v in metrics.items() if k not in ("loss", "grad_norm")}
    # The reported token means (entropy, ratio, clip fractions) cover the rows trained on, microbatched or not.
    for (microbatch_size, skip), values in reported.items():
        if microbatch_size and (0, skip) in reported:
            assert values.keys() == reported[0, skip].keys() >= {"entropy", "ratio_mean"}
            for key, value in values.items():
                np.testing.assert_allclose(value, reported[0, skip][key], rtol=1e-5, atol=1e-7, err_msg=key)
    whole, whole_loss, whole_norm = results[0]
    assert whole_norm > 0
    for params_after, loss, norm in results[1:]:
        np.testing.assert_allclose(loss, whole_loss, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(norm, whole_norm, rtol=1e-4)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), params_after, whole)


@hypothesis.given(advantages=hnp.arrays(np.float32, st.integers(1, 64).map(lambda n: 4 * n),
                                        elements=st.sampled_from([0.0, 0.0, 1.0, -0.5])),
                  row_multiple=st.sampled_from([1, 2, 4, 8]))
def test_trained_minibatch_keeps_every_informative_row_in_few_shapes(advantages, row_multiple):
    size = len(advantages)
    hypothesis.assume(size % row_multiple == 0)
    batch = {"advantages": advantages, "mask": np.ones((size, 3), np.float32), "tokens": np.arange(size)[:, None]}
    minibatch, num_items, num_sequences = trainer.trained_minibatch(
        batch, np.arange(size), skip_zero_advantage=True, row_multiple=row_multiple)
    kept = np.flatnonzero(advantages != 0)
    rows = len(minibatch["tokens"])
    assert rows % row_multiple == 0 and rows <= size and rows >= max(len(kept), 1)
    quarter = -(-(size // 4) // row_multiple) * row_multiple
    assert rows == size or rows % quarter == 0
    trained = minibatch["mask"].sum(1) > 0
    assert sorted(minibatch["tokens"][trained, 0]) == list(kept)  # each informative row once, nothing else
    assert num_items == 3 * size and num_sequences == size


def test_a_killed_run_resumes_to_the_same_parameters_as_an_uninterrupted_one(tmp_path):
    uninterrupted = trainer.GRPORun(_smoke_config(steps=4), str(tmp_path / "a"))
    summary = uninterrupted.run()
    assert summary["steps"] == 4 and set(summary["final_eval"]) >= {"eval/accuracy", "eval/accuracy_sampled"}

    killed_dir = tmp_path / "b"
    command = [sys.executable, "-m", "r1jax.main", "--config", os.path.join(REPO, "configs", "countdown_tiny.py:smoke"),
               "--workdir", str(killed_dir), "--config.steps=4",
               *(f"--config.{key}={value}" for key, value in SMOKE_CHANGES.items())]
    kill_after_checkpoint(command, killed_dir, 2, cwd=REPO)

    resumed = trainer.GRPORun(_smoke_config(steps=4), str(killed_dir))
    assert resumed.data_position > 0
    resumed.run()
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.state["params"]),
                 jax.device_get(uninterrupted.state["params"]))

    records = metrics_lib.read_metrics(str(killed_dir / "metrics.jsonl"))
    assert {r["step"] for r in records} == {0, 1, 2, 3, 4} and records[-1]["step"] == 4
    last = records[-1]
    for key in ("reward/countdown", "reward/format_tags", "reward/total", "accuracy", "response_length/mean",
                "response_length/max", "truncated", "zero_std_groups", "kl", "clip_fraction_low", "clip_fraction_high",
                "entropy", "grad_norm", "learning_rate", "tokens_per_s", "time/rollout_s", "time/generate_s",
                "time/score_s", "time/train_s",
                "eval/accuracy"):
        assert key in last, key
    assert max(int(name) for name in os.listdir(killed_dir / "checkpoints") if name.isdigit()) == 4

    # Run again once finished: nothing to train; the summary's evaluations come from the earlier runs' metrics.
    rerun = trainer.run(_smoke_config(steps=4), str(killed_dir))
    assert rerun["steps"] == 4 and "stopped" not in rerun
    assert rerun["first_eval"] == {k: v for k, v in records[0].items() if k.startswith("eval/")}
    assert rerun["final_eval"] == {k: v for k, v in last.items() if k.startswith("eval/")}

    # Continued with fewer updates per step (main's --allow_config_change): counted from the checkpoint.
    longer = trainer.GRPORun(_smoke_config(steps=5, **{"grpo.num_iterations": 1}), str(killed_dir))
    assert longer.start_step == 4 and longer.run()["steps"] == 5
    assert [r["step"] for r in metrics_lib.read_metrics(str(killed_dir / "metrics.jsonl"))][-2:] == [4, 5]


@pytest.mark.parametrize("resumed_with_other_updates_per_step", [False, True])
def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_checkpoint(
        tmp_path, resumed_with_other_updates_per_step):
    if resumed_with_other_updates_per_step:  # step 1 made 4 updates, the later steps make 1 each
        trainer.GRPORun(_smoke_config(steps=1, **{"grpo.num_iterations": 4}), str(tmp_path)).run()
        run = trainer.GRPORun(_smoke_config(steps=3, **{"grpo.num_iterations": 1}), str(tmp_path))
    else:
        run = trainer.GRPORun(_smoke_config(steps=3), str(tmp_path))
    real_step = run.train_step
    calls = []

    def poisoned_after_first_grpo_step(*args):
        calls.append(1)
        state, metrics = real_step(*args)
        if len(calls) > run._updates_per_step() * (1 - resumed_with_other_updates_per_step):
            metrics = dict(metrics, loss=jax.numpy.nan)
        return state, metrics

    run.train_step = poisoned_after_first_grpo_step
    with pytest.raises(optim.TrainingDiverged, match=r"loss is nan at step 2; the last good checkpoint is kept"):
        run.run()
    assert sorted(int(name) for name in os.listdir(tmp_path / "checkpoints")) == [1]


def test_rollouts_sample_from_weights_resharded_to_the_decode_layout(tmp_path, monkeypatch):
    """The trainer's side of `rollout.rules`; that both layouts sample alike is test_sampler's."""
    config = _smoke_config()
    config.mesh.update(data=1, fsdp=4, tensor=2)
    config.rollout.rules = "tensor_decode"
    run = trainer.GRPORun(config, str(tmp_path))
    calls = []

    def recording_generate(model_config, params, prompts, *, num_samples, max_new_tokens, **kwargs):
        calls.append((jax.tree.map(lambda x: x.sharding, params), tuple(nn.get_logical_axis_rules())))
        rows = len(prompts) * num_samples
        return sampler.SampleResult(np.zeros((rows, max_new_tokens), np.int32), np.ones(rows, np.int32),
                                    np.zeros((rows, max_new_tokens), np.float32), np.ones(rows, bool))

    monkeypatch.setattr(sampler, "generate", recording_generate)
    run.rollout(run.task.test_examples(4), jax.random.key(0), num_samples=2, temperature=1.0)
    decode_rules = sharding.get_rules("tensor_decode")
    training_shardings = runtime.param_shardings(run.model_config, run.mesh, run.rules)
    assert calls == [(runtime.param_shardings(run.model_config, run.mesh, decode_rules), decode_rules)]
    assert calls[0][0] != training_shardings
    assert jax.tree.map(lambda x: x.sharding, run.state["params"]) == training_shardings
    # The run's training state sits where the ahead-of-time compile (and its memory figures) assume: Adam's
    # moments sharded like their parameters, not replicated on every device.
    expected = aot.abstract_state(run.model_config, run.optimizer, run.mesh, run.rules, with_rng=True)
    assert jax.tree.map(lambda x: x.sharding, run.state) == jax.tree.map(lambda x: x.sharding, expected)
    [adam, *_] = [s for s in jax.tree.leaves(run.state["opt_state"], is_leaf=lambda x: hasattr(x, "mu"))
                  if hasattr(s, "mu")]
    assert jax.tree.map(lambda x: x.sharding, adam.mu) == training_shardings


def test_reference_logprobs_taken_a_microbatch_at_a_time_are_those_of_the_whole_rollout(tmp_path):
    config = _smoke_config(**{"grpo.beta": 0.04, "grpo.num_iterations": 1})  # 16 rows, minibatches of 8
    run = trainer.GRPORun(config, str(tmp_path))
    rollout = run.rollout(run.task.test_examples(config.rollout.prompts_per_step), jax.random.key(0),
                          num_samples=config.rollout.group_size, temperature=1.0)
    batch = trainer.training_batch(rollout, np.ones(len(rollout.texts)), mask_truncated=False, pad_id=run.pad_id,
                                   prompt_bucket_cap=run.model_config.max_position_embeddings)
    whole, _ = trainer.completion_logprobs(run.model_config, run.reference_params, batch, config.rollout.temperature)
    seen = []

    def recording_step(state, minibatch, *counts):
        seen.append((np.asarray(minibatch["tokens"]), np.asarray(minibatch["ref_logp"])))
        return state, dict(loss=np.float32(0), grad_norm=np.float32(0), learning_rate=np.float32(0))

    run.train_step = recording_step
    run.train_on(rollout)
    assert len(batch["tokens"]) > config.grpo.minibatch_size and sum(len(t) for t, _ in seen) == len(batch["tokens"])
    for tokens, ref_logp in seen:  # each minibatch row against the same row of the whole-rollout pass
        rows = [next(i for i, row in enumerate(batch["tokens"]) if np.array_equal(row, t)) for t in tokens]
        np.testing.assert_allclose(ref_logp, np.asarray(whole)[rows], atol=1e-6)


def test_dynamic_sampling_keeps_informative_groups_and_counts_each_round_once(tmp_path, monkeypatch):
    config = _smoke_config(**{"grpo.max_sampling_rounds": 3})
    run = trainer.GRPORun(config, str(tmp_path))
    P, G = config.rollout.prompts_per_step, config.rollout.group_size
    informative = iter([np.arange(P) % 2 == 1, np.zeros(P, bool), np.arange(P) < P // 2])  # per round, per group

    def fake_rollout(examples, key, *, num_samples, temperature):
        rows = len(examples) * num_samples
        totals = np.zeros(rows)
        totals[::num_samples] = next(informative)  # a group's first sample differs from the others or not
        return trainer.Rollout(list(examples) * num_samples, [[1]] * rows, sampler.SampleResult(
            np.zeros((rows, 2), np.int32), np.ones(rows, np.int32), np.zeros((rows, 2), np.float32),
            np.ones(rows, bool)), [""] * rows, {"countdown": totals}, totals, generate_seconds=10.0,
            score_seconds=1.0)

    monkeypatch.setattr(run, "rollout", fake_rollout)
    batch, stats = run.collect(jax.random.key(0))
    assert stats["sampling_rounds"] == 3 and stats["zero_std_groups"] == 0.5
    assert (batch.generate_seconds, batch.score_seconds) == (30.0, 3.0)
    groups = batch.total_rewards.reshape(P, G)
    assert np.all(groups.max(1) > groups.min(1))  # P // 2 informative groups from rounds 1 and 3 each


def test_a_signal_during_the_first_evaluation_stops_before_step_one(tmp_path, monkeypatch):
    import signal

    run = trainer.GRPORun(_smoke_config(), str(tmp_path))

    def evaluate_then_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler sends during a long first evaluation
        return {"eval/accuracy": 0.5}

    monkeypatch.setattr(run, "evaluate", evaluate_then_sigterm)
    summary = run.run()
    assert summary["steps"] == 0 and summary["first_eval"] == {"eval/accuracy": 0.5}
    assert run.checkpointer.latest_step() is None


def test_logged_accuracy_leaves_out_unjudgeable_completions_as_the_reward_mean_does(tmp_path):
    run = trainer.GRPORun(_smoke_config(), str(tmp_path))
    scores = np.array([1.0, 1.0, 0.0, np.nan, np.nan, 1.0, 0.0, np.nan])  # NaN: an unreadable gold answer
    rows = len(scores)
    rollout = trainer.Rollout([{}] * rows, [[1]] * rows, sampler.SampleResult(
        np.zeros((rows, 2), np.int32), np.ones(rows, np.int32), np.zeros((rows, 2), np.float32), np.ones(rows, bool)),
        [""] * rows, {"countdown": scores}, scores, generate_seconds=1.0, score_seconds=1.0)
    metrics = run.rollout_metrics(rollout)
    assert metrics["accuracy"] == metrics["reward/countdown"] == 3 / 5
