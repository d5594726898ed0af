"""Benchmark one GRPO step of r1jax against TRL's `GRPOTrainer` on the same random weights.

A step is: sample `--group-size` completions of each of `--prompts` prompts, score them, and make
`--minibatches * --num-iterations` optimizer updates on them. Each step is timed whole and split into

  generate  prompts -> completion texts: tokenize, sample (r1jax: `sampler.generate` in
            `GRPORun.collect`; TRL: `GRPOTrainer._generate`, i.e. `model.generate`), decode;
  score     the reward functions and the group advantages (TRL: the rest of
            `_generate_and_score_completions`, its padding and bookkeeping included);
  train     everything else: the loss, gradients and AdamW updates, plus any extra no-grad
            log-prob pass (TRL makes one for the old policy when a step has more than one update;
            r1jax reuses the sampler's log-probs).

Both sides run the same work on the same CPU: the same `r1jax.model` weights (random,
normal(0.02)), saved with `hf.save_pretrained` and loaded into `transformers`; float32 everywhere
(TRL: `bf16=False`); the same countdown prompts in the same order, each left-padded with spaces to
exactly `--prompt-len` tokens of the character tokenizer (widened with filler tokens so every id the
model can sample decodes to text); sampling at temperature 1 with no top-k/top-p; every completion
exactly `--new-tokens` long (r1jax: no EOS ids and no stop strings; TRL: `min_new_tokens` masks EOS
until the budget is spent; both are checked); the same rewards (`RewardSet` of the countdown
reward); the Dr. GRPO loss with clip 0.2/0.28, beta 0 (no reference model), group-scaled
advantages, no gradient checkpointing / remat. TRL runs with `use_cpu`, no vLLM, `report_to="none"`,
logging, saving and progress bars off. r1jax is driven through `GRPORun.collect` and
`GRPORun.train_on` (what `GRPORun._step` runs, without its metric writing and evaluation).

The first `--warmup-steps` steps (r1jax: XLA compiles; TRL: first-call allocations) are timed but left
out of the averages and shown in their own column. tokens/s counts completion tokens per second of a
whole step.

Threads: by default both frameworks run on one thread (`torch.set_num_threads(1)`, XLA's Eigen pool
off), so they get the same CPU and the result does not hinge on the machine's other load. On a shared
machine whose cores are busy, torch's OpenMP threads wait for each other at every op: on this 2-core
box at load 4, a forward pass of the tiny model over 64 tokens took 390 ms with torch's default 2
threads and 4.4 ms with 1. `--threads 0` leaves each framework's default (compare only on an idle
machine); `--threads N` sets torch's threads and leaves XLA's pool on.

    python tools/bench_grpo.py                              # tiny and qwen2.5-0.5b, a few minutes on 2 cores
    python tools/bench_grpo.py --models tiny --steps 5
    python tools/bench_grpo.py --models qwen2.5-0.5b --prompts 4 --group-size 8 --new-tokens 64
    python tools/bench_grpo.py --frameworks r1jax           # no TRL needed

Sizes left unset take per-model presets: tiny models 8 prompts x 8 samples, prompt 32, 64 new
tokens, 3 timed steps; larger ones 2 prompts x 4 samples, prompt 32, 32 new tokens, 1 timed step.
TRL is not a dependency of r1jax: `pip install trl` (it brings `datasets` and `accelerate`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import io
import itertools
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import torch
import transformers
from absl import logging as absl_logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the shared helpers, also under `python -m`
from bench_sampler import machine_line, transformers_copy  # noqa: E402

from r1jax import config as config_lib  # noqa: E402
from r1jax import model as model_lib  # noqa: E402
from r1jax.data import char_tokenizer, prompts as prompts_lib  # noqa: E402
from r1jax.rewards import RewardSet  # noqa: E402
from r1jax.rl import trainer  # noqa: E402

PRESETS = {  # tiny-* models, and every other model
    "tiny": dict(prompts=8, group_size=8, prompt_len=32, new_tokens=64, steps=3),
    "large": dict(prompts=2, group_size=4, prompt_len=32, new_tokens=32, steps=1),
}
REWARDS = [dict(name="countdown", weight=1.0)]
# Small countdown problems, so that the compact prompt fits 32 tokens: "Numbers: 20 20 20. Target: 50.\n<think>".
COUNTDOWN = dict(min_count=3, max_count=3, max_number=20, max_target=50, test_size=16)
LOSS = dict(loss_type="dr_grpo", advantage_scale="group", epsilon_low=0.2, epsilon_high=0.28, beta=0.0)
OPTIMIZER = dict(learning_rate=1e-6, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.0, max_grad_norm=1.0)


@dataclasses.dataclass(frozen=True)
class Setup:
    """One benchmark case; both frameworks run exactly this."""

    model: str
    prompts: int
    group_size: int
    prompt_len: int
    new_tokens: int
    minibatches: int  # optimizer updates per pass over a step's completions
    num_iterations: int  # passes over them
    steps: int  # timed steps
    warmup_steps: int
    seed: int

    @property
    def rows(self) -> int:
        return self.prompts * self.group_size

    @property
    def minibatch_size(self) -> int:
        return self.rows // self.minibatches

    @property
    def updates_per_step(self) -> int:
        return self.minibatches * self.num_iterations

    @property
    def total_steps(self) -> int:
        return self.warmup_steps + self.steps


@dataclasses.dataclass
class Timings:
    """Seconds per step, every step of a run in order (warm-up steps first)."""

    step: list[float] = dataclasses.field(default_factory=list)
    generate: list[float] = dataclasses.field(default_factory=list)
    score: list[float] = dataclasses.field(default_factory=list)
    train: list[float] = dataclasses.field(default_factory=list)

    def add(self, step: float, generate: float, score: float) -> None:
        self.step.append(step)
        self.generate.append(generate)
        self.score.append(score)
        self.train.append(step - generate - score)

    def summary(self, setup: Setup) -> dict[str, float]:
        timed = slice(setup.warmup_steps, None)
        means = {name: float(np.mean(getattr(self, name)[timed])) for name in ("step", "generate", "score", "train")}
        return dict(means, tokens_per_s=setup.rows * setup.new_tokens / means["step"],
                    warmup=float(np.sum(self.step[:setup.warmup_steps])))

    def describe(self, index: int) -> str:
        return (f"{self.step[index]:.2f}s (generate {self.generate[index]:.2f}, score {self.score[index]:.3f}, "
                f"train {self.train[index]:.2f})")


# ---------------------------------------------------------------------------------------------
# What both sides share: tokenizer, prompts, rewards


def write_tokenizer(directory: str, vocab_size: int) -> str:
    """The character tokenizer with filler tokens `<x102>`... up to `vocab_size`, so every sampled id decodes."""
    char_tokenizer.write_char_tokenizer(directory)
    path = os.path.join(directory, "tokenizer.json")
    with open(path) as f:
        spec = json.load(f)
    vocab = spec["model"]["vocab"]
    vocab.update({f"<x{i}>": i for i in range(len(vocab), vocab_size)})
    with open(path, "w") as f:
        json.dump(spec, f)
    return directory


def padded_prompt(example: Mapping[str, Any], tokenizer, length: int) -> str:
    """The compact countdown prompt, left-padded with spaces to exactly `length` tokens."""
    text = prompts_lib.compact_prompt(example["nums"], example["target"])
    missing = length - len(tokenizer.encode(text))
    if missing < 0:
        raise SystemExit(f"--prompt-len {length} is too short for the prompt {text!r}; use at least "
                         f"{length - missing}")
    return " " * missing + text


def rows_of(examples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The fields the rewards read, as plain Python values."""
    return [dict(nums=[int(n) for n in e["nums"]], target=int(e["target"])) for e in examples]


# ---------------------------------------------------------------------------------------------
# r1jax


def grpo_config(setup: Setup, tokenizer_dir: str, data_dir: str):
    config = config_lib.grpo_config()
    config.seed = setup.seed
    config.model.name = setup.model
    config.tokenizer = tokenizer_dir
    config.data.update(template="compact", data_dir=data_dir)
    config.data.countdown.update(COUNTDOWN, train_size=max(64, setup.total_steps * setup.prompts))
    # max_prompt_len = the prompt length: the prompt bucket (and cache) is exactly --prompt-len.
    config.rollout.update(prompts_per_step=setup.prompts, group_size=setup.group_size, max_new_tokens=setup.new_tokens,
                          max_prompt_len=setup.prompt_len, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
                          stop_strings=())
    config.grpo.update(LOSS, num_iterations=setup.num_iterations, minibatch_size=setup.minibatch_size,
                       dynamic_sampling=False, mask_truncated=False)
    config.rewards = REWARDS
    config.accuracy_reward = "countdown"
    config.optimizer.update(OPTIMIZER)
    config.steps = setup.total_steps
    config.eval.update(every=0)
    config_lib.validate(config, known_modes=["grpo"], num_devices=jax.device_count())
    return config


class _TimedRewards:
    """A `RewardSet` that adds up the seconds its `score_batch` takes."""

    def __init__(self, rewards: RewardSet):
        self.rewards = rewards
        self.seconds = 0.0

    def score_batch(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.rewards.score_batch(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start

    def __getattr__(self, name):
        return getattr(self.rewards, name)


def make_r1jax_run(setup: Setup, workdir: str) -> trainer.GRPORun:
    """The run, its tokenizer widened to the model's vocabulary and its prompts padded to --prompt-len."""
    vocab_size = model_lib.get_model_config(setup.model).vocab_size
    tokenizer_dir = write_tokenizer(os.path.join(workdir, "tokenizer"), vocab_size)
    config = grpo_config(setup, tokenizer_dir, os.path.join(workdir, "data"))
    with contextlib.redirect_stdout(io.StringIO()):  # TFDS's notes on building the countdown prompts
        run = trainer.GRPORun(config, os.path.join(workdir, "run"))
    run.task = dataclasses.replace(run.task, render_prompt=lambda e: padded_prompt(e, run.tokenizer, setup.prompt_len))
    # Equal work: every completion runs to --new-tokens (the config already has no stop strings).
    run.eos_ids = ()
    return run


def step_examples(run: trainer.GRPORun, setup: Setup) -> list[Mapping[str, Any]]:
    """The prompts the run will draw, in order (collect reads `prompts_per_step` per step)."""
    stream = run.task.train_examples(seed=run.config.seed, start_index=run.data_position)
    return [example for _, example in itertools.islice(stream, setup.total_steps * setup.prompts)]


def bench_r1jax(setup: Setup, run: trainer.GRPORun) -> Timings:
    timings = Timings()
    rewards = run.rewards = _TimedRewards(run.rewards)
    advantage_s = _AdvantageClock(setup, run.config)
    for step in range(1, setup.total_steps + 1):
        key = jax.random.fold_in(run.state["rng"], step)  # as GRPORun._step
        rewards.seconds = 0.0
        start = time.perf_counter()
        rollout, _ = run.collect(key)
        collected = time.perf_counter()
        run.train_on(rollout)
        end = time.perf_counter()
        lengths = rollout.completions.lengths
        if lengths.min() != setup.new_tokens or len(lengths) != setup.rows:
            raise AssertionError(f"r1jax sampled {len(lengths)} completions of {lengths.min()}-{lengths.max()} "
                                 f"tokens, expected {setup.rows} of {setup.new_tokens}")
        # train_on computes the advantages; time that part again so it counts as scoring, as in TRL.
        score = rewards.seconds + advantage_s(rollout.total_rewards)
        timings.add(end - start, collected - start - rewards.seconds, score)
        print(f"    r1jax step {step}: {timings.describe(-1)}", flush=True)
    return timings


class _AdvantageClock:
    """Seconds `grpo.group_advantages` takes on a step's rewards, as `GRPORun.train_on` calls it."""

    def __init__(self, setup: Setup, config):
        self.group_size = setup.group_size
        self.scale = config.grpo.advantage_scale

    def __call__(self, rewards: np.ndarray) -> float:
        start = time.perf_counter()
        np.asarray(trainer.grpo.group_advantages(rewards, self.group_size, scale=self.scale))
        return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# TRL


def bench_trl(setup: Setup, model, tokenizer_dir: str, examples: Sequence[Mapping[str, Any]], texts: Sequence[str],
              prompt_ids: Sequence[Sequence[int]], workdir: str) -> Timings:
    """`GRPOTrainer.train` for all steps; per-step times from a callback, the split from wrapped methods.

    `texts` are r1jax's prompts of `examples`, `prompt_ids` their tokens: TRL must draw the same ones, in order.
    """
    try:
        import datasets
        import trl
    except ImportError as error:
        raise SystemExit(f"TRL is not installed ({error}); `pip install trl`, or pass --frameworks r1jax") from None
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_file=os.path.join(tokenizer_dir, "tokenizer.json"), pad_token=char_tokenizer.PAD,
        eos_token=char_tokenizer.EOS)
    rewards = RewardSet(REWARDS)

    def countdown_reward(completions, nums, target, **_):
        return rewards.score_batch(completions, rows_of([dict(nums=n, target=t) for n, t in zip(nums, target)])).total

    dataset = datasets.Dataset.from_list([dict(prompt=text, **row) for text, row in zip(texts, rows_of(examples))])
    args = _trl_config(trl, setup, workdir)
    # The tokenizer's special ids on the model, which transformers would otherwise align with a printed notice.
    for holder, name in itertools.product((model.config, model.generation_config), ("eos", "pad", "bos")):
        setattr(holder, f"{name}_token_id", getattr(tokenizer, f"{name}_token_id"))
    clock = _TRLClock()
    step_prompts = [[list(ids) for ids in prompt_ids[i:i + setup.prompts] for _ in range(setup.group_size)]
                    for i in range(0, len(prompt_ids), setup.prompts)]
    timed_trainer = _timed_trainer_class(trl.GRPOTrainer)(
        clock=clock, setup=setup, step_prompts=step_prompts, model=model, reward_funcs=countdown_reward, args=args,
        train_dataset=dataset, processing_class=tokenizer, callbacks=[clock])
    timed_trainer.remove_callback(transformers.PrinterCallback)  # prints the end-of-training summary otherwise
    with warnings.catch_warnings():
        # TRL calls `is_gradient_checkpointing`, deprecated in transformers 5 (now "activation checkpointing").
        warnings.filterwarnings("ignore", ".*gradient_checkpointing.* is deprecated", FutureWarning)
        timed_trainer.train()

    timings = Timings()
    updates = setup.updates_per_step
    for step in range(setup.total_steps):
        start = clock.step_ends[step * updates - 1] if step else clock.train_begin
        prepare = clock.prepare[step]
        timings.add(clock.step_ends[(step + 1) * updates - 1] - start, clock.generate[step],
                    prepare - clock.generate[step] - clock.logp_passes[step])
        print(f"    TRL step {step + 1}: {timings.describe(-1)}", flush=True)
    return timings


class _TRLClock(transformers.TrainerCallback):
    """Wall-clock of every optimizer update, and the generate / prepare / extra log-prob seconds of each step."""

    def __init__(self):
        self.train_begin = 0.0
        self.step_ends: list[float] = []
        self.generate: list[float] = []
        self.prepare: list[float] = []  # all of _generate_and_score_completions
        self.logp_passes: list[float] = []  # its no-grad log-prob passes (old policy, reference)

    def on_train_begin(self, args, state, control, **kwargs):
        self.train_begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.step_ends.append(time.perf_counter())


def _trl_config(trl, setup: Setup, workdir: str):
    """TRL's settings for the same step as r1jax's (see the module docstring)."""
    settings = dict(
        output_dir=os.path.join(workdir, "trl"), seed=setup.seed,
        use_cpu=True, bf16=False, fp16=False, use_vllm=False, gradient_checkpointing=False, torch_compile=False,
        report_to="none", logging_strategy="no", save_strategy="no", eval_strategy="no", disable_tqdm=True,
        log_completions=False, dataloader_num_workers=0, shuffle_dataset=False,  # the prompts in r1jax's order
        # One generation of `rows` completions feeds `minibatches` updates of `minibatch_size` rows, `num_iterations` times.
        num_generations=setup.group_size, per_device_train_batch_size=setup.minibatch_size,
        gradient_accumulation_steps=1, steps_per_generation=setup.minibatches, num_iterations=setup.num_iterations,
        max_steps=setup.total_steps * setup.updates_per_step,
        max_completion_length=setup.new_tokens, generation_kwargs=dict(min_new_tokens=setup.new_tokens),
        temperature=1.0, top_p=1.0, top_k=0,
        loss_type=LOSS["loss_type"], scale_rewards=LOSS["advantage_scale"], epsilon=LOSS["epsilon_low"],
        epsilon_high=LOSS["epsilon_high"], beta=LOSS["beta"],
        learning_rate=OPTIMIZER["learning_rate"], lr_scheduler_type="constant", warmup_steps=0,
        adam_beta1=OPTIMIZER["b1"], adam_beta2=OPTIMIZER["b2"], adam_epsilon=OPTIMIZER["eps"],
        weight_decay=OPTIMIZER["weight_decay"], max_grad_norm=OPTIMIZER["max_grad_norm"])
    with warnings.catch_warnings():
        # TRL's `gradient_checkpointing` field is deprecated in transformers 5 (now `activation_checkpointing`).
        warnings.filterwarnings("ignore", ".*gradient_checkpointing.* is deprecated", FutureWarning)
        return trl.GRPOConfig(**settings)


def _timed_trainer_class(base):
    class TimedGRPOTrainer(base):
        def __init__(self, *args, clock: _TRLClock, setup: Setup, step_prompts: list[list[list[int]]], **kwargs):
            super().__init__(*args, **kwargs)
            self._clock = clock
            self._setup = setup
            self._step_prompts = step_prompts  # the prompt tokens r1jax samples at each step, group by group
            self._in_prepare = False

        def _generate(self, prompts):
            start = time.perf_counter()
            result = super()._generate(prompts)
            seconds = time.perf_counter() - start
            prompt_ids, completion_ids = result[0], result[1]
            if [list(ids) for ids in prompt_ids] != self._step_prompts[len(self._clock.generate)]:
                raise AssertionError("TRL sampled other prompt tokens than r1jax, or in another order")
            lengths = {len(ids) for ids in completion_ids}
            if lengths != {self._setup.new_tokens}:
                raise AssertionError(f"TRL generated completions of {sorted(lengths)} tokens, not all "
                                     f"{self._setup.new_tokens}")
            self._clock.generate.append(seconds)
            return result

        def _generate_and_score_completions(self, inputs):
            self._clock.logp_passes.append(0.0)
            self._in_prepare = True
            start = time.perf_counter()
            try:
                return super()._generate_and_score_completions(inputs)
            finally:
                self._clock.prepare.append(time.perf_counter() - start)
                self._in_prepare = False

        def _get_per_token_logps_and_entropies(self, *args, **kwargs):
            start = time.perf_counter()
            result = super()._get_per_token_logps_and_entropies(*args, **kwargs)
            if self._in_prepare:
                self._clock.logp_passes[-1] += time.perf_counter() - start
            return result

    return TimedGRPOTrainer


# ---------------------------------------------------------------------------------------------
# The run


def _load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_model(setup: Setup, frameworks: Sequence[str]) -> dict[str, dict[str, float]]:
    print(f"\n{setup.model}: {setup.prompts} prompts x {setup.group_size} samples, prompt {setup.prompt_len}, "
          f"{setup.new_tokens} new tokens, {setup.updates_per_step} update(s) of {setup.minibatch_size} rows per step, "
          f"{setup.warmup_steps} warm-up + {setup.steps} timed steps; {_load()}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        run = make_r1jax_run(setup, workdir)
        examples = step_examples(run, setup)
        texts = [run.task.render_prompt(e) for e in examples]
        prompt_ids = [run.task.prompt_tokens(e) for e in examples]
        print(f"  r1jax set up in {time.perf_counter() - start:.1f}s "
              f"({run.model_config.num_params() / 1e6:.1f}M params)", flush=True)
        reference = None
        if "trl" in frameworks:
            start = time.perf_counter()
            reference = transformers_copy(run.model_config, run.state["params"])
            print(f"  saved and loaded into transformers in {time.perf_counter() - start:.1f}s", flush=True)
        if "r1jax" in frameworks:
            results["r1jax"] = bench_r1jax(setup, run).summary(setup)
            print(f"  r1jax done; {_load()}", flush=True)
        tokenizer_dir = os.path.join(workdir, "tokenizer")
        run.writer.close()
        del run
        gc.collect()  # frees the JAX buffers before torch allocates its own
        if reference is not None:
            results["TRL"] = bench_trl(setup, reference, tokenizer_dir, examples, texts, prompt_ids,
                                       workdir).summary(setup)
            print(f"  TRL done; {_load()}", flush=True)
            del reference
            gc.collect()
    return results


def print_table(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> None:
    columns = (("s/step", "step", ".3f"), ("generate s", "generate", ".3f"), ("score s", "score", ".4f"),
               ("train s", "train", ".3f"), ("tokens/s", "tokens_per_s", ".1f"), ("warm-up s", "warmup", ".2f"))
    header = f"{'model':<14} {'framework':<10} " + " ".join(f"{name:>10}" for name, _, _ in columns)
    print(header)
    print("-" * len(header))
    for model, by_framework in results.items():
        for framework, values in by_framework.items():
            print(f"{model:<14} {framework:<10} " + " ".join(f"{values[key]:>10{fmt}}" for _, key, fmt in columns))
        if {"r1jax", "TRL"} <= by_framework.keys():
            ours, theirs = by_framework["r1jax"], by_framework["TRL"]
            print(f"{model:<14} {'r1jax/TRL':<10} " + " ".join(f"{_ratio(ours[key], theirs[key]):>10.2f}"
                                                                  for _, key, _ in columns))


def _ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny", "qwen2.5-0.5b"], choices=sorted(model_lib.MODEL_CONFIGS))
    parser.add_argument("--frameworks", nargs="+", default=["r1jax", "trl"], choices=["r1jax", "trl"])
    parser.add_argument("--prompts", type=int, help="prompts per step (preset: 8 tiny, 2 otherwise)")
    parser.add_argument("--group-size", type=int, help="samples per prompt, TRL's num_generations (preset: 8 / 4)")
    parser.add_argument("--prompt-len", type=int, help="prompt tokens (preset: 32)")
    parser.add_argument("--new-tokens", type=int, help="completion tokens, all generated (preset: 64 / 32)")
    parser.add_argument("--minibatches", type=int, default=1, help="optimizer updates per pass over a step's completions")
    parser.add_argument("--num-iterations", type=int, default=1, help="passes over a step's completions (GRPO's mu)")
    parser.add_argument("--steps", type=int, help="timed steps (preset: 3 / 1)")
    parser.add_argument("--warmup-steps", type=int, default=1, help="untimed first steps (compiles)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch's intra-op threads; 1 (default) also turns off XLA's Eigen thread pool, so both "
                             "frameworks get one core; 0 leaves each framework's default (see above)")
    args = parser.parse_args()
    if (args.steps is not None and args.steps < 1) or args.warmup_steps < 0:
        parser.error("--steps must be >= 1 and --warmup-steps >= 0")

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.threads == 1:  # before JAX's backend starts (machine_line starts it)
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
    transformers.utils.logging.disable_progress_bar()
    absl_logging.set_verbosity(absl_logging.ERROR)  # TFDS warns that the countdown config is a custom one
    print(machine_line())
    print(f"XLA's Eigen thread pool {'off' if args.threads == 1 else 'on'} (XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r})")
    if "trl" in args.frameworks:
        try:
            import trl
            print(f"trl {trl.__version__}")
        except ImportError:
            parser.error("TRL is not installed: `pip install trl`, or pass --frameworks r1jax")
    results = {}
    for model in args.models:
        preset = PRESETS["tiny" if model.startswith("tiny") else "large"]
        sizes = {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in preset.items()}
        setup = Setup(model=model, **sizes, minibatches=args.minibatches, num_iterations=args.num_iterations,
                      warmup_steps=args.warmup_steps, seed=args.seed)
        if setup.rows % setup.minibatches:
            parser.error(f"--minibatches {setup.minibatches} must divide prompts x group size = {setup.rows}")
        results[model] = bench_model(setup, args.frameworks)

    print(f"\nfloat32; means over the timed steps; tokens/s = completion tokens per second of a step; "
          f"r1jax/TRL < 1 means r1jax takes less time (for tokens/s: > 1 means r1jax is faster); {_load()}")
    print_table(results)


if __name__ == "__main__":
    main()
