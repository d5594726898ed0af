"""Inference-time scaling on GSM8K's test split (1319 problems), e.g. of DeepSeek-R1-Distill-Qwen-1.5B.

    python -m r1jax.main --config configs/eval_gsm8k.py --config.model.checkpoint=/path/to/DeepSeek-R1-Distill-Qwen-1.5B \
        --config.data.manual_dir=/path/to/gsm8k

`model.checkpoint` is a local Hugging Face model directory (its tokenizer and chat template are read from
there); `data.manual_dir` holds GSM8K's `test.jsonl` (r1jax/data/benchmarks.py says where to get it).
The prompt is the 'chat' math template (the answer in \\boxed{}), scored by the 'math' reward. R1's
evaluation protocol: sampling at temperature 0.6 and top-p 0.95; R1 samples up to 32768 tokens, here 4096,
which GSM8K's solutions fit in. Not yet run on a machine.
"""

from r1jax.evaluate_mode import math_benchmark_config


def get_config(arg: str | None = None):
    if arg:
        raise ValueError(f"unknown variant {arg!r}; configs/eval_gsm8k.py has none")
    return math_benchmark_config("gsm8k", max_new_tokens=4096, prompt_batch_size=8,
                                 num_samples=16, budgets=((0, 2048), (1024, 2048)))
