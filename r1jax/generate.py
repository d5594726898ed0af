"""`mode: generate`: sample completions for a file of prompts and write them to `<workdir>/completions.jsonl`.

    python -m r1jax.main --config configs/generate.py --config.model.checkpoint=DIR --config.prompts_file=FILE

Prompts file: `.jsonl` (or `.json`) with a `{"prompt": ...}` object per line, or plain text with one prompt
per line. Each output line is one sample: prompt index, sample index, prompt, completion text, token
count, whether it finished (EOS or stop string) or was truncated, and the mean log-prob of its tokens
(see `r1jax.sampler` for the convention).

The file is written a batch of prompts at a time (`records.ResumableWriter`): a run stopped by SIGTERM
(exit code 75) or killed continues from its last whole batch when the same command runs again, with the
same samples an uninterrupted run writes. Other prompts or settings in that workdir are refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import jax
import ml_collections
import numpy as np
import tqdm

from r1jax import checkpoint, runtime, sampler, sharding
from r1jax.data import records
from r1jax.config import ConfigError, validate_generation, validate_output_file, validate_tokenizer
from r1jax.tokenizer import Tokenizer


def validate_config(config: ml_collections.ConfigDict) -> None:
    """The generate mode's keys; raises ConfigError naming the first bad one."""
    validate_tokenizer(config)
    checks = [
        ("prompts_file", bool(config.prompts_file) and os.path.isfile(config.prompts_file),
         f"{config.prompts_file!r} is not a file; point it at a .jsonl ({{\"prompt\": ...}} per line) or .txt file"),
        ("num_samples", config.num_samples > 0, f"{config.num_samples} must be positive"),
        ("prompt_batch_size", config.prompt_batch_size > 0, f"{config.prompt_batch_size} must be positive"),
    ]
    for key, ok, message in checks:
        if not ok:
            raise ConfigError(f"config.{key}: {message}")
    validate_output_file(config)
    validate_generation(config)


def read_prompts(path: str) -> list[str]:
    """Prompts of a `.jsonl`/`.json` file (`"prompt"` of each object, one a line) or of a text file (one per
    non-empty line)."""
    if path.endswith((".jsonl", ".json")):
        prompts = []
        for where, record in records.read_records(path, what="prompts"):
            if not isinstance(record.get("prompt"), str):
                raise ValueError(f"{where}: expected an object with a string 'prompt'")
            prompts.append(record["prompt"])
        return prompts
    prompts = [line for _, line in records.text_lines(path) if line.strip()]
    if not prompts:
        raise ValueError(f"{path}: no prompts in the file")
    return prompts


def _encode(tokenizer: Tokenizer, prompt: str, chat_template: bool) -> list[int]:
    if chat_template:
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                             tokenize=True)
    return tokenizer.encode_prompt(prompt)


def run(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes one JSON line per sample to `<workdir>/<output_file>` and returns its path."""
    validate_config(config)
    mesh, rules = runtime.mesh_and_rules(config)
    model_config = runtime.model_config(config)
    params = sampler.per_layer_params(runtime.load_or_init_params(config, model_config, mesh, rules))
    tokenizer = runtime.tokenizer(config, workdir)
    prompts = read_prompts(config.prompts_file)
    encoded = [_encode(tokenizer, p, config.chat_template) for p in prompts]
    try:  # all of them before the first batch: not a batch's row after earlier batches were written
        sampler.check_request(model_config, encoded, config.max_new_tokens, config.max_prompt_len or None,
                              tokenizer.pad_id or 0, tokenizer.eos_ids)
    except ValueError as e:
        raise ValueError(f"{config.prompts_file}: {e} (prompts counted from 0)") from None
    request = dict(max_new_tokens=config.max_new_tokens, num_samples=config.num_samples,
                   temperature=config.temperature, top_k=config.top_k, top_p=config.top_p, min_p=config.min_p,
                   eos_ids=tokenizer.eos_ids, stop_strings=tuple(config.stop_strings), tokenizer=tokenizer,
                   max_prompt_len=config.max_prompt_len or None, pad_id=tokenizer.pad_id or 0)
    key = jax.random.key(config.seed)
    output_path = os.path.join(workdir, config.output_file)
    # What the samples depend on; the mesh only changes the order of float additions.
    settings = {k: v for k, v in json.loads(config.to_json_best_effort()).items() if k != "mesh"}
    signature = dict(config=settings, prompts_sha256=hashlib.sha256(json.dumps(prompts).encode()).hexdigest())
    batch_size = config.prompt_batch_size
    generated_tokens, start = 0, time.perf_counter()
    with records.ResumableWriter(output_path, signature) as out, sharding.use_mesh(mesh, rules), \
            checkpoint.PreemptionGuard() as preemption, \
            tqdm.tqdm(total=len(prompts), unit="prompt", desc="generate") as progress:
        progress.update(min(out.batches_done * batch_size, len(prompts)))
        for first in checkpoint.batch_starts(len(prompts), batch_size, first_batch=out.batches_done,
                                             preemption=preemption, what="generate", unit="prompts",
                                             saved_in=output_path):
            batch = encoded[first:first + batch_size]
            result = sampler.generate(model_config, params, batch, seed=jax.random.fold_in(key, first), **request)
            samples = []
            for row, (tokens, length, logprobs, finished) in enumerate(
                    zip(result.tokens, result.lengths, result.logprobs, result.finished)):
                index = first + row // config.num_samples
                samples.append({
                    "prompt_index": index,
                    "sample": row % config.num_samples,
                    "prompt": prompts[index],
                    "completion": tokenizer.decode_completion(tokens[:length], tokenizer.eos_ids),
                    "num_tokens": int(length),
                    "finished": bool(finished),
                    "mean_logprob": float(np.mean(logprobs[:length])),
                })
            out.write_batch(samples)
            generated_tokens += int(result.lengths.sum())
            progress.update(len(batch))
            progress.set_postfix(tokens_per_s=f"{generated_tokens / (time.perf_counter() - start):.0f}")
    return output_path
