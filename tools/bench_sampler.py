"""Benchmark `r1jax.sampler.generate` against `transformers` `generate` on the same random weights.

For each model size and batch size: output tokens/s of a full generation (prompt of `--prompt-len`
random tokens, exactly `--new-tokens` new ones: no EOS, `min_new_tokens` on the torch side) and time
to first token (a generation of one new token). Both greedy, float32, on the same CPU; compiles and
the first torch call are warmed up outside the timings. The weights are random (normal(0.02)), so
the text is meaningless but the work is the real work.

    python tools/bench_sampler.py                                   # tiny and qwen2.5-0.5b, batches 1 8 64
    python tools/bench_sampler.py --sizes tiny --batches 1 8
    python tools/bench_sampler.py --sizes qwen2.5-0.5b --batches 64 --new-tokens 64

`--new-tokens` applies to every row; rows of large models at large batches take minutes per side.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax
import numpy as np
import torch
import transformers

from r1jax import hf, sampler
from r1jax import model as model_lib


def machine_line() -> str:
    """Versions and threads of both frameworks, the first line of every benchmark's output."""
    return (f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs")


def transformers_copy(config, params):
    """The same weights as a float32 `transformers` model in eval mode, through `hf.save_pretrained`."""
    with tempfile.TemporaryDirectory() as directory:
        hf.save_pretrained(config, params, directory)
        return transformers.AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


def _best_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_r1jax(config, params, prompts, new_tokens: int, repeats: int) -> tuple[float, float]:
    """(seconds for the full generation, seconds to first token), compiles excluded."""
    def run(n):
        return sampler.generate(config, params, prompts, max_new_tokens=n, temperature=0.0)

    for n in (new_tokens, 1):
        assert run(n).lengths.min() == n  # also compiles
    return _best_seconds(lambda: run(new_tokens), repeats), _best_seconds(lambda: run(1), repeats)


def bench_transformers(model, prompts, new_tokens: int, repeats: int) -> tuple[float, float]:
    input_ids = torch.tensor(prompts)  # equal lengths: no padding needed

    def run(n):
        with torch.inference_mode():
            return model.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                  max_new_tokens=n, min_new_tokens=n, pad_token_id=0)

    assert run(2).shape[1] == input_ids.shape[1] + 2  # warm-up
    return _best_seconds(lambda: run(new_tokens), repeats), _best_seconds(lambda: run(1), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["tiny", "qwen2.5-0.5b"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per measurement; the fastest counts")
    parser.add_argument("--skip-transformers", action="store_true")
    args = parser.parse_args()
    print(machine_line())

    rows = []
    for size in args.sizes:
        config = model_lib.get_model_config(size)
        params = model_lib.init_params(config, jax.random.key(0))
        reference = None if args.skip_transformers else transformers_copy(config, params)
        for batch in args.batches:
            prompts = np.random.default_rng(batch).integers(0, config.vocab_size, (batch, args.prompt_len)).tolist()
            ours, ours_first = bench_r1jax(config, params, prompts, args.new_tokens, args.repeats)
            theirs, theirs_first = (bench_transformers(reference, prompts, args.new_tokens, args.repeats)
                                    if reference is not None else (np.nan, np.nan))
            rows.append((size, batch, batch * args.new_tokens / ours, batch * args.new_tokens / theirs,
                         ours_first, theirs_first))
            print(f"  {size} batch {batch}: r1jax {ours:.2f}s, transformers {theirs:.2f}s", flush=True)
        del reference, params

    print(f"\nprompt {args.prompt_len} tokens, {args.new_tokens} new tokens, greedy, float32")
    header = (f"{'model':<14} {'batch':>5} {'r1jax tok/s':>12} {'hf tok/s':>10} {'ratio':>6} "
              f"{'r1jax TTFT ms':>14} {'hf TTFT ms':>11}")
    print(header)
    print("-" * len(header))
    for size, batch, ours, theirs, ours_first, theirs_first in rows:
        print(f"{size:<14} {batch:>5} {ours:>12.1f} {theirs:>10.1f} {ours / theirs:>6.2f} "
              f"{ours_first * 1e3:>14.1f} {theirs_first * 1e3:>11.1f}")


if __name__ == "__main__":
    main()
