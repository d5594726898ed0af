"""R1-Zero on programming problems from the Qwen2.5-7B base model: rewards from unit tests run in the sandbox.

    python -m r1jax.main --config configs/r1zero_code_qwen25_7b.py --config.model.checkpoint=/path/to/Qwen2.5-7B \\
        --config.data.code.train_file=/data/code/train.jsonl --config.data.code.test_file=/data/code/test.jsonl
    python -m r1jax.main --config configs/r1zero_code_qwen25_7b.py:v5p-16 --config.model.checkpoint=... ...
    python -m r1jax.main --config configs/r1zero_code_qwen25_7b.py:gpu8 --config.model.checkpoint=... \\
        --config.data.code.tests_key=input_output --config.data.code.question_key=question ...

`model.checkpoint` is a local Hugging Face directory of Qwen/Qwen2.5-7B (its tokenizer is read from there).
The data are JSONL files with a problem statement and its test cases per line, in any layout
`r1jax.data.tasks.code_tests` reads: a list of `{"input", "output"}` stdin/stdout cases or assert
statements (MBPP's `test_list`), APPS/TACO's `input_output` (stdin or `fn_name` calls), CodeContests'
`public_tests`, open-r1's `verification_info`, LiveCodeBench's `public_test_cases` (stdin or functional) and
compressed `private_test_cases`, or any of these as JSON text; a problem's `starter_code` is shown in its prompt.
Name the fields with --config.data.code.question_key=... / tests_key=... / starter_code_key=...; Hugging Face
parquet files convert with
`pandas.read_parquet(f).to_json(out, orient='records', lines=True)`.

The variant is at most one machine of r1jax.config.HARDWARE ('gpu8', the default; 'v5p-16'; 'v5e-32').

The recipe is the DAPO side of `r1zero_math_qwen25_7b.py:dapo` (token-level loss, clip-higher, dynamic
sampling, truncated samples masked out of the loss, no KL) with the R1 template, which asks for the
program in a ```python block inside the answer tags. The accuracy reward is DeepCoder's (Luo et al. 2025,
"DeepCoder: A Fully Open-Source 14B Coder at O3-mini Level"): 1 when the program passes every test of its
problem, else 0, since partial credit rewards programs that special-case the visible tests. Programs run in
the sandbox of `r1jax.rewards.code`, `reward_workers` at a time; run as root on the training hosts so each
program gets its own uid (see that module's docstring).
"""

from r1jax.config import grpo_config, parse_variant, use_hardware

MACHINES = ("gpu8", "v5p-16", "v5e-32")  # the first is the default


def get_config(arg: str | None = None):
    machine, _ = parse_variant(arg, machines=MACHINES)
    config = grpo_config()
    config.model.update(
        name="qwen2.5-7b",  # the checkpoint's architecture (tests use it when no checkpoint is present)
        checkpoint="/path/to/Qwen2.5-7B",  # set with --config.model.checkpoint=
        dtype="bfloat16", param_dtype="float32",  # bf16 compute; f32 master weights for 1e-6 updates
        remat="full")
    use_hardware(config, machine)

    config.data.update(name="code", template="base")
    config.data.code.update(train_file="/path/to/train.jsonl", test_file="/path/to/test.jsonl",
                            question_key="problem", tests_key="tests")
    config.rollout.update(
        prompts_per_step=64,
        group_size=8,
        max_prompt_len=1024,
        max_new_tokens=3000,  # 1024 + 3000 fits Qwen2.5-7B's positions with room to spare
        temperature=1.0, top_p=1.0, top_k=0,
        stop_strings=("</answer>",))
    config.grpo.update(
        loss_type="dapo",  # token mean over each minibatch
        advantage_scale="group",
        epsilon_low=0.2, epsilon_high=0.28,  # clip-higher
        beta=0.0,  # no reference model
        num_iterations=1,
        minibatch_size=64,  # 8 updates per step of 64 x 8 samples
        microbatch_size=16,  # full-vocabulary logits of 16 rows x 3000 tokens at a time
        dynamic_sampling=True,  # groups that all pass or all fail carry no signal: sample others instead
        max_sampling_rounds=5,
        mask_truncated=True)  # a program cut off by the budget is not a wrong program
    # 2 s of wall time per test case; a small reward for the R1 tags, whose <think> the prompt already opened.
    config.rewards = [dict(name="code", weight=1.0, kwargs=dict(all_or_nothing=True, timeout_s=2.0)),
                      dict(name="format_tags", weight=0.1, kwargs=dict(prefill="<think>"))]
    config.accuracy_reward = "code"
    config.reward_workers = 16  # sandboxes at a time per host (a host's CPU cores, less the input pipeline)
    config.optimizer.update(learning_rate=1e-6, schedule="constant", warmup_steps=10, max_grad_norm=1.0)
    config.steps = 500
    config.eval.update(every=16, num_examples=256, batch_size=64)
    config.checkpoint_every = 16
    return config
