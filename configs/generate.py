"""Sample completions for a file of prompts into <workdir>/completions.jsonl.

    python -m r1jax.main --config configs/generate.py --config.model.checkpoint=/path/to/hf_model \
        --config.prompts_file=prompts.jsonl
    python -m r1jax.main --config configs/generate.py:greedy --config.model.checkpoint=... --config.prompts_file=...

Variants: "" (sampling at temperature 1, 4 samples per prompt, as a GRPO group), "greedy".
The tokenizer is read from the checkpoint directory unless --config.tokenizer names another.
"""

from r1jax.config import base_config


def get_config(arg: str | None = None):
    config = base_config()
    config.mode = "generate"
    config.prompts_file = ""  # .jsonl with {"prompt": ...} per line, or text with one prompt per line
    config.tokenizer = ""  # default: model.checkpoint
    config.chat_template = False  # wrap each prompt as a user turn with the tokenizer's chat template
    config.output_file = "completions.jsonl"
    config.prompt_batch_size = 16  # prompts per sampler call (padded to the mesh's data-parallel size)
    config.max_prompt_len = 0  # longest prompt accepted; 0: the model's positions minus max_new_tokens
    config.max_new_tokens = 256
    config.num_samples = 4
    config.temperature = 1.0
    config.top_k = 0
    config.top_p = 1.0
    config.min_p = 0.0
    config.stop_strings = ()
    if arg == "greedy":
        config.num_samples = 1
        config.temperature = 0.0
    elif arg:
        raise ValueError(f"unknown variant {arg!r} of configs/generate.py; use '' or 'greedy'")
    return config
