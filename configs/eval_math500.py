"""Inference-time scaling on MATH-500, e.g. of DeepSeek-R1-Distill-Qwen-1.5B (R1 reports 83.9 pass@1).

    python -m r1jax.main --config configs/eval_math500.py --config.model.checkpoint=/path/to/DeepSeek-R1-Distill-Qwen-1.5B \
        --config.data.manual_dir=/path/to/math500

`model.checkpoint` is a local Hugging Face model directory (tokenizer and chat template read from there);
`data.manual_dir` holds MATH-500's `test.jsonl` (r1jax/data/benchmarks.py says where to get it). The
prompt is the 'chat' math template (the answer in \\boxed{}), scored by the 'math' reward. R1's protocol:
temperature 0.6, top-p 0.95, 64 samples per problem for pass@1; R1 samples up to 32768 tokens, here 8192.
Not yet run on a machine.
"""

from r1jax.evaluate_mode import math_benchmark_config


def get_config(arg: str | None = None):
    if arg:
        raise ValueError(f"unknown variant {arg!r}; configs/eval_math500.py has none")
    # 2 prompts x 64 samples: 128 rows of 8k-token KV cache per sampler call.
    return math_benchmark_config("math500", max_new_tokens=8192, prompt_batch_size=2,
                                 num_samples=64, budgets=((0, 4096), (2048, 4096), (4096, 8192)))
