"""Inference-time scaling on GSM8K's test split (1319 problems), e.g. of DeepSeek-R1-Distill-Qwen-1.5B.

    python -m r1jax.main --config configs/eval_gsm8k.py --config.model.checkpoint=/path/to/DeepSeek-R1-Distill-Qwen-1.5B \
        --config.data.manual_dir=/path/to/gsm8k

`model.checkpoint` is a local Hugging Face model directory (its tokenizer and chat template are read from
there); `data.manual_dir` holds GSM8K's `test.jsonl` (r1jax/data/benchmarks.py says where to get it).
The prompt is the 'chat' math template (the answer in \\boxed{}), scored by the 'math' reward. R1's
evaluation protocol: sampling at temperature 0.6 and top-p 0.95; R1 samples up to 32768 tokens, here 4096,
which GSM8K's solutions fit in. Not yet run on a machine.
"""

from r1jax.evaluate_mode import eval_config


def get_config(arg: str | None = None):
    config = eval_config()
    config.model.update(name="qwen2.5-1.5b",  # the checkpoint's architecture (tests use it without a checkpoint)
                        checkpoint="/path/to/DeepSeek-R1-Distill-Qwen-1.5B", dtype="bfloat16", param_dtype="bfloat16")
    config.data.update(name="gsm8k", template="chat", manual_dir="/path/to/gsm8k")
    config.max_new_tokens = 4096
    config.stop_strings = ()  # the chat template's end-of-turn token (an EOS) ends a completion
    config.prompt_batch_size = 8
    config.verifier = [dict(name="math", weight=1.0)]
    config.sampling.update(num_samples=16)
    config.beam_search.update(widths=(4,))
    # s1's answer prompt; the math reward reads what follows "Answer:" when there is no \boxed{}.
    config.budget_forcing.update(budgets=((0, 2048), (1024, 2048)), max_answer_tokens=64,
                                 answer_opening="\n\nFinal Answer: ")
    if arg:
        raise ValueError(f"unknown variant {arg!r}; configs/eval_gsm8k.py has none")
    return config
