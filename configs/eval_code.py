"""pass@k on programming problems, e.g. of DeepSeek-R1-Distill-Qwen-1.5B (R1 reports 16.9 pass@1 on LiveCodeBench).

    python -m r1jax.main --config configs/eval_code.py --config.model.checkpoint=/path/to/DeepSeek-R1-Distill-Qwen-1.5B \
        --config.data.code.test_file=/path/to/problems.jsonl

`model.checkpoint` is a local Hugging Face model directory (tokenizer and chat template read from there);
`data.code.test_file` holds one problem a line with its test cases, in any layout
`r1jax.data.tasks.code_tests` reads (set data.code.question_key / tests_key to its field names; e.g.
LiveCodeBench: question_content, and public_test_cases or its compressed private_test_cases; its functional
problems are called as LiveCodeBench's judge calls them, their starter code shown in the prompt). The prompt is
the 'chat' code template (a ```python block after the thinking); a sample is correct when its program passes every test in
the sandbox (`r1jax.rewards.code`; run as root to give each program its own uid). R1's protocol:
temperature 0.6, top-p 0.95, 16 samples per problem for pass@1, up to 32768 tokens (here 8192).
Not yet run on a machine.
"""

from r1jax.evaluate_mode import eval_config


def get_config(arg: str | None = None):
    if arg:
        raise ValueError(f"unknown variant {arg!r}; configs/eval_code.py has none")
    config = eval_config()
    config.model.update(name="qwen2.5-1.5b",  # the checkpoint's architecture (tests use it without a checkpoint)
                        checkpoint="/path/to/DeepSeek-R1-Distill-Qwen-1.5B", dtype="bfloat16",
                        param_dtype="bfloat16")
    config.data.update(name="code", template="chat")
    config.data.code.update(test_file="/path/to/problems.jsonl", question_key="problem", tests_key="tests")
    config.methods = ("greedy", "sampling")  # pass@k and the mean pass@1 come from the samples
    config.max_new_tokens = 8192
    config.stop_strings = ()  # the chat template's end-of-turn token (an EOS) ends a completion
    config.prompt_batch_size = 8  # 8 prompts x 16 samples: 128 rows of 8k-token KV cache per sampler call
    config.verifier = (dict(name="code", weight=1.0),)  # best-of-N by the tests themselves: an oracle
    config.sampling.update(num_samples=16)
    config.reward_workers = 8  # sandboxes at a time
    return config
