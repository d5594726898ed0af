"""TinyZero: R1-Zero-style GRPO on Countdown from the Qwen2.5-3B base model.

    python -m r1jax.main --config configs/tinyzero_qwen25_3b.py --config.model.checkpoint=/path/to/Qwen2.5-3B
    python -m r1jax.main --config configs/tinyzero_qwen25_3b.py:gpu8 --config.model.checkpoint=/path/to/Qwen2.5-3B
    python -m r1jax.main --config configs/tinyzero_qwen25_3b.py:v4-8 --config.model.checkpoint=/path/to/Qwen2.5-3B
    python -m r1jax.main --config configs/tinyzero_qwen25_3b.py:v5e-8 --config.model.checkpoint=/path/to/Qwen2.5-3B

`model.checkpoint` is a local Hugging Face directory of Qwen/Qwen2.5-3B (config.json, *.safetensors and
the tokenizer, which is read from there). The variant picks the machine, i.e. the mesh layout of
r1jax.config.HARDWARE: 'gpu8' (the default: 8 GPUs of 80 GB), 'v4-8' or 'v5e-8'.

The numbers are TinyZero's GRPO run (github.com/Jiayi-Pan/TinyZero: scripts/train_tiny_zero_a100_grpo.sh on
the defaults of its verl/trainer/config/ppo_trainer.yaml, data from examples/data_preprocess/countdown.py),
cited next to each value. Where this config departs from it, the comment says so.
"""

from r1jax.config import grpo_config, parse_variant, use_hardware

MACHINES = ("gpu8", "v4-8", "v5e-8")  # the variants; the first is the default


def get_config(arg: str | None = None):
    machine, _ = parse_variant(arg, machines=MACHINES)
    config = grpo_config()
    config.model.update(
        name="qwen2.5-3b",  # the checkpoint's architecture (tests use it when no checkpoint is present)
        checkpoint="/path/to/Qwen2.5-3B",  # BASE_MODEL; set with --config.model.checkpoint=
        dtype="bfloat16", param_dtype="float32",  # bf16 compute, f32 master weights (verl's FSDP mixed precision)
        remat="full")  # enable_gradient_checkpointing=True
    use_hardware(config, machine)

    # Jiayi-Pan/Countdown-Tasks-3to4: 3 or 4 numbers in 1..99; --train_size 327680 --test_size 1024.
    # Targets use this repo's generator range (1..100); TinyZero's came with the Hugging Face dataset.
    config.data.update(name="countdown", template="base")
    config.data.countdown.update(min_count=3, max_count=4, min_number=1, max_number=99, train_size=327_680,
                                 test_size=1024)
    config.rollout.update(
        prompts_per_step=128,  # data.train_batch_size=128
        group_size=5,  # actor_rollout_ref.rollout.n=5
        max_prompt_len=256,  # data.max_prompt_length=256
        max_new_tokens=1024,  # data.max_response_length=1024
        temperature=1.0, top_p=1.0, top_k=0)  # rollout defaults: temperature 1, top_p 1, top_k -1 (off)
    # TinyZero stopped only at EOS; stopping at </answer> (grpo_config's default) saves the tokens a base
    # model writes after its answer, which TinyZero's reward (the last <answer> block) mostly ignored.
    config.grpo.update(
        loss_type="token_mean",  # verl's policy loss: masked mean over the tokens of each minibatch
        advantage_scale="group",  # adv_estimator=grpo: (r - group mean) / (group std + 1e-6), population std here
        # (verl's is unbiased: its advantages are sqrt((n-1)/n) of these, 0.89x for groups of 5)
        epsilon_low=0.2, epsilon_high=0.2,  # actor.clip_ratio=0.2
        beta=0.001, kl_estimator="k3",  # use_kl_loss=True, kl_loss_coef=0.001, kl_loss_type=low_var_kl
        num_iterations=1,  # ppo_epochs=1
        minibatch_size=64 * 5,  # ppo_mini_batch_size=64 prompts x n=5: two updates per step
        # Gradient accumulation (verl has its own micro batches): logits of 16 rows x 1024 tokens at a time.
        microbatch_size=16,
        dynamic_sampling=False, mask_truncated=False)
    # TinyZero's reward_score/countdown.py: 1.0 for a correct equation, 0.1 for a well-formed wrong one
    # (r1jax.rewards.countdown's defaults). verl's entropy bonus (entropy_coeff=0.001) has no counterpart here.
    config.rewards = [dict(name="countdown", weight=1.0)]
    config.accuracy_reward = "countdown"
    config.optimizer.update(
        learning_rate=1e-6, schedule="constant", warmup_steps=0,  # optim.lr=1e-6, warmup_style=constant
        b1=0.9, b2=0.999, weight_decay=0.01,  # verl's torch AdamW: betas (0.9, 0.999), weight_decay 1e-2
        max_grad_norm=1.0)  # actor.grad_clip=1.0
    # TinyZero set total_epochs=15 (about 38k steps at this batch) and stopped runs by hand; this is a
    # bound for a first run: raise it with --config.steps.
    config.steps = 1000
    config.eval.update(every=10, num_examples=1024, batch_size=256)  # test_freq=10, the whole test split
    config.checkpoint_every = 10  # save_freq=10
    return config
