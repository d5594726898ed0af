"""R1-Zero on math word problems from the Qwen2.5-7B base model: Dr. GRPO, or DAPO as a variant.

    python -m r1jax.main --config configs/r1zero_math_qwen25_7b.py --config.model.checkpoint=/path/to/Qwen2.5-7B \\
        --config.data.math.train_file=/data/math/train.jsonl --config.data.math.test_file=/data/math/test.jsonl
    python -m r1jax.main --config configs/r1zero_math_qwen25_7b.py:dapo --config.model.checkpoint=... \\
        --config.data.math.train_file=... --config.data.math.test_file=...
    python -m r1jax.main --config configs/r1zero_math_qwen25_7b.py:v5p-16 --config.model.checkpoint=... ...
    python -m r1jax.main --config configs/r1zero_math_qwen25_7b.py:dapo,v5e-32 --config.model.checkpoint=... ...
    python -m r1jax.main --config configs/r1zero_math_qwen25_7b.py:gpu8 --config.model.checkpoint=... ...

`model.checkpoint` is a local Hugging Face directory of Qwen/Qwen2.5-7B (its tokenizer is read from there).
The data are JSONL files with a "problem" and an "answer" per line (e.g. MATH levels 3-5 for training and
MATH-500 for evaluation); a line without "answer" but with a MATH-style "solution" is scored against the
solution's last \\boxed{}. Other field names: --config.data.math.question_key=... / answer_key=...

The variant is a comma-separated list: at most one machine of r1jax.config.HARDWARE ('gpu8', the default:
8 GPUs of 80 GB; 'v5p-16'; 'v5e-32') and optionally 'dapo'.

Default: Dr. GRPO as "Understanding R1-Zero-Like Training" (Liu et al. 2025) ran it, from
github.com/sail-sg/understand-r1-zero (examples/qwen2.5-7b.sh and train_zero_math.py): R1 template, no
std scaling of advantages, a constant length normaliser, no KL; the values are cited where they are set.
'dapo': the DAPO algorithm (Yu et al. 2025; verl's recipe/dapo/run_dapo_qwen2.5_32b.sh) on the same
batch and length budget: token-level loss over the whole batch, clip-higher, dynamic sampling,
soft overlong punishment and truncated samples masked out of the loss.
"""

from r1jax.config import grpo_config, parse_variant, use_hardware

MACHINES = ("gpu8", "v5p-16", "v5e-32")  # the first is the default
OPTIONS = ("dapo",)


def get_config(arg: str | None = None):
    machine, options = parse_variant(arg, machines=MACHINES, options=OPTIONS)
    config = grpo_config()
    config.model.update(
        name="qwen2.5-7b",  # the checkpoint's architecture (tests use it when no checkpoint is present)
        checkpoint="/path/to/Qwen2.5-7B",  # --pretrain Qwen/Qwen2.5-7B; set with --config.model.checkpoint=
        dtype="bfloat16", param_dtype="float32",  # --bf16 compute; f32 master weights for 1e-6 updates
        remat="full")  # --gradient-checkpointing
    use_hardware(config, machine)

    config.data.update(name="math", template="base")  # --prompt_template r1
    config.data.math.update(train_file="/path/to/train.jsonl", test_file="/path/to/test.jsonl",
                            question_key="problem", answer_key="answer")  # --input_key problem --output_key answer
    config.rollout.update(
        prompts_per_step=128,  # --rollout_batch_size 128
        group_size=8,  # --num_samples 8
        max_prompt_len=1024,  # --prompt_max_length 1024
        max_new_tokens=3000,  # --generate_max_length 3000 (1024 + 3000 fits Qwen2.5-Math's 4096 positions)
        temperature=1.0, top_p=1.0, top_k=0,  # --temperature 1 --top_p 1
        stop_strings=("</answer>",))  # the R1 template's stop
    config.grpo.update(
        loss_type="dr_grpo",  # --critic_type drgrpo: token sum / generate_max_length
        advantage_scale="none",  # Dr. GRPO: r - group mean, no division by the std
        epsilon_low=0.2, epsilon_high=0.2,  # PPO's symmetric clip; clip-higher is DAPO's
        beta=0.0,  # --beta 0: no reference model
        num_iterations=1,  # --num_ppo_epochs 1
        minibatch_size=128,  # --train_batch_size 128: 8 updates per step of 128 x 8 samples
        # Gradient accumulation: full-vocabulary logits of 16 rows x 3000 tokens at a time, not 128.
        microbatch_size=16,
        dynamic_sampling=False, mask_truncated=False)
    # The accuracy reward reads the <answer> block (or, failing that, the last \boxed{}); a small format
    # reward for the R1 tags, whose <think> the prompt already opened.
    config.rewards = [dict(name="math", weight=1.0),
                      dict(name="format_tags", weight=0.1, kwargs=dict(prefill="<think>"))]
    config.accuracy_reward = "math"
    config.optimizer.update(learning_rate=1e-6, schedule="constant", warmup_steps=0,  # --lr_scheduler constant
                            max_grad_norm=1.0)
    config.steps = 500  # a first run's budget; the paper's runs went on for --num_prompt_epoch passes
    config.eval.update(every=16, num_examples=500, batch_size=128)  # --eval_steps 16; MATH-500's size
    config.checkpoint_every = 16

    if "dapo" in options:
        config.grpo.update(
            loss_type="dapo",  # use_token_level_loss=True: token mean over each minibatch (verl's token-mean)
            advantage_scale="group",  # adv_estimator=grpo keeps the std scaling
            epsilon_low=0.2, epsilon_high=0.28,  # clip_ratio_low / clip_ratio_high
            dynamic_sampling=True,  # filter_groups on acc: drop groups whose rewards are all equal
            max_sampling_rounds=10,  # max_num_gen_batches=10
            mask_truncated=True)  # overlong filtering: truncated samples carry no loss
        # overlong_buffer: the last 4096 of 20480 tokens (a fifth of the budget), penalty_factor=1.0.
        config.rewards = list(config.rewards) + [
            dict(name="overlong_penalty", weight=1.0,
                 kwargs=dict(max_length=config.rollout.max_new_tokens,
                             cache_length=config.rollout.max_new_tokens // 5))]
        # lr_warmup_steps=10 RL steps (verl steps its scheduler once per RL step; r1jax once per update, 8 a step),
        # weight_decay=0.1; verl's AdamW keeps torch's betas (0.9, 0.999).
        config.optimizer.update(warmup_steps=10 * 8, weight_decay=0.1, b2=0.999)
    return config
