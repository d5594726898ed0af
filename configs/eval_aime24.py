"""Inference-time scaling on AIME 2024 (30 problems), e.g. of DeepSeek-R1-Distill-Qwen-1.5B (R1 reports 28.9
pass@1 and 52.7 cons@64).

    python -m r1jax.main --config configs/eval_aime24.py --config.model.checkpoint=/path/to/DeepSeek-R1-Distill-Qwen-1.5B \
        --config.data.manual_dir=/path/to/aime2024

`model.checkpoint` is a local Hugging Face model directory (tokenizer and chat template read from there);
`data.manual_dir` holds `aime_2024.jsonl` (r1jax/data/benchmarks.py says where to get it and how to convert
the Hugging Face parquet). The prompt is the 'chat' math template (the answer in \\boxed{}), scored by the
'math' reward. R1's protocol: temperature 0.6, top-p 0.95, 64 samples per problem, pass@1 and cons@64; R1
samples up to 32768 tokens, here 16384, so that 64 rows of KV cache fit one 80 GB GPU. Not yet run on a machine.
"""

from r1jax.evaluate_mode import math_benchmark_config


def get_config(arg: str | None = None):
    if arg:
        raise ValueError(f"unknown variant {arg!r}; configs/eval_aime24.py has none")
    return math_benchmark_config("aime2024", max_new_tokens=16384, prompt_batch_size=1,
                                 num_samples=64, budgets=((0, 8192), (4096, 8192), (8192, 16384)))
