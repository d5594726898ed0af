"""DeepSeek-R1's recipe on the tiny Countdown setup: cold-start SFT, RL, rejection sampling, SFT, RL.

    python -m r1jax.main --config configs/countdown_tiny.py         # first: the pretrained base (workdir/countdown_tiny/base)
    python -m r1jax.main --config configs/r1_pipeline_tiny.py
    python -m r1jax.main --config configs/r1_pipeline_tiny.py --config.vars.base=/path/to/hf_base --workdir /tmp/r1
    python -m r1jax.main --config configs/r1_pipeline_tiny.py:smoke --config.vars.traces=traces.jsonl --workdir /tmp/r1_smoke

Stages (each in <workdir>/<name>; running the command again resumes at the unfinished stage):
1. cold_start  SFT of the base on journey data (wrong attempts, the check that catches them, the fix),
               the small long-thought set R1 starts RL from.
2. rl          GRPO from it with the Countdown accuracy reward, the format reward and the
               language-consistency reward R1 added against language mixing.
3. rejection   the RL policy samples the training problems; the verifier keeps the first correct trace
               of each (`mode: distill`).
4. sft         SFT of the base on those traces (R1 fine-tunes the base, not the RL model).
5. rl_again    GRPO from that SFT model.

Variant `smoke` (for tests) runs every stage for a few steps from a random tiny model; since that model
solves nothing, its rejection stage verifies the traces of `vars.traces` (`prompt_id` and `completion`
lines for the first 16 training problems) instead of sampling.
"""

from r1jax.pipeline import pipeline_config

# What turns countdown_tiny.py's from-scratch GRPO run into RL from an earlier stage's model.
FROM_CHECKPOINT = {"pretrain.steps": 0, "model.vocab_size": 0, "tokenizer": ""}
# The prompt ends with <think>, which the completion does not repeat: the rewards that read the thinking are told.
R1_REWARDS = [dict(name="countdown", weight=1.0), dict(name="format_tags", weight=0.1, kwargs=dict(prefill="<think>")),
              dict(name="language_consistency", weight=0.1, kwargs=dict(prefill="<think>"))]


def get_config(arg: str | None = None):
    config = pipeline_config()
    config.vars.base = "workdir/countdown_tiny/base"
    rl_steps, sft_steps, distill_prompts, smoke = 100, 300, 0, {}
    if arg == "smoke":
        # A random tiny base made by a first stage, and a few steps everywhere: the wiring, in seconds.
        config.vars.traces = ""
        rl_steps, sft_steps, distill_prompts = 2, 3, 16
        smoke = {"data.countdown.train_size": 256, "data.countdown.test_size": 16, "eval.num_examples": 16,
                 "rollout.prompts_per_step": 4, "rollout.group_size": 4, "rollout.max_new_tokens": 16,
                 "grpo.minibatch_size": 8, "eval.batch_size": 16, "checkpoint_every": 1}
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of configs/r1_pipeline_tiny.py; the only variant is 'smoke'")
    config.stages = [
        dict(name="cold_start", config="configs/sft_journey_tiny.py:journey" + (",smoke" if smoke else ""),
             overrides={} if smoke else {"model.checkpoint": "{base}", "steps": 150}),
        dict(name="rl", config="configs/countdown_tiny.py",
             overrides={**FROM_CHECKPOINT, **smoke, "model.checkpoint": "{cold_start}/hf_export", "steps": rl_steps,
                        "rewards": R1_REWARDS}),
        dict(name="rejection", config="configs/distill_countdown_tiny.py",
             overrides={"model.checkpoint": "{rl}/hf_export", "num_prompts": distill_prompts,
                        **({"data.countdown.train_size": 256, "data.countdown.test_size": 16,
                            "traces_file": "{traces}"} if smoke else {})}),
        dict(name="sft", config="configs/sft_countdown_tiny.py",
             overrides={"model.checkpoint": "{cold_start}/hf_export" if smoke else "{base}",
                        "data.train_file": "{rejection}/distill.jsonl", "steps": sft_steps,
                        **({"data.eval_size": 0, "sft.seq_len": 128, "eval.every": 0, "checkpoint_every": 1}
                           if smoke else {})}),
        dict(name="rl_again", config="configs/countdown_tiny.py",
             overrides={**FROM_CHECKPOINT, **smoke, "model.checkpoint": "{sft}/hf_export", "steps": rl_steps,
                        "rewards": R1_REWARDS}),
    ]
    return config
