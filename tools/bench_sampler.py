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

On a CPU, r1jax is also timed with the host split into `--cpu-devices` JAX devices (default: one per
core; `r1jax.main --cpu_devices`) and the batch split over them (columns `xN`): XLA:CPU runs most of
a small model's decode ops on one thread, so a device per core keeps every core busy. transformers
uses all cores through torch's threads in both comparisons. The weights are split into per-layer
arrays once before timing, as the generate mode does.

On an accelerator (`--skip-transformers`: the torch reference here is a CPU build) the last column says
how close decode comes to the memory-bandwidth bound: every decode step reads all parameters, so at
most `bandwidth / parameter bytes` steps per second, with bandwidth measured by a large elementwise copy
(`r1jax.benchmark.copy_bandwidth_gbs`). Decode time is the full generation minus the time to first token.

    python tools/bench_sampler.py --sizes qwen2.5-0.5b qwen2.5-1.5b --dtype bfloat16 --skip-transformers  # GPU
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time

import jax
import numpy as np
import torch
import transformers

from r1jax import benchmark, distributed, hf, runtime, sampler, sharding
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


def bench_r1jax(config, params, prompts, new_tokens: int, repeats: int, data_devices: int = 1
                ) -> tuple[float, float]:
    """(seconds for the full generation, seconds to first token), compiles excluded; with `data_devices`
    above 1, on a mesh that splits the batch over that many devices."""
    mesh = sharding.make_mesh(dict(data=data_devices), jax.devices()[:data_devices]) if data_devices > 1 else None
    rules = sharding.FSDP_TENSOR_RULES
    with sharding.use_mesh(mesh, rules) if mesh else contextlib.nullcontext():
        if mesh:
            params = jax.device_put(params, runtime.param_shardings(config, mesh, rules))
        params = sampler.per_layer_params(params)

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
    parser.add_argument("--dtype", default="float32", help="r1jax's parameter and compute dtype")
    parser.add_argument("--cpu-devices", type=int, default=os.cpu_count(),
                        help="on a CPU, also time r1jax with the batch split over this many devices (1: not)")
    args = parser.parse_args()
    distributed.set_cpu_devices(max(args.cpu_devices, 1))
    split = args.cpu_devices if jax.devices()[0].platform == "cpu" and args.cpu_devices > 1 else 1
    print(machine_line())
    bandwidth_gbs = benchmark.copy_bandwidth_gbs()
    print(f"measured copy bandwidth {bandwidth_gbs:.1f} GB/s")

    rows = []
    for size in args.sizes:
        config = model_lib.get_model_config(size)
        params = model_lib.init_params(config, jax.random.key(0))
        reference = None if args.skip_transformers else transformers_copy(config, params)
        config = model_lib.get_model_config(size, dtype=args.dtype, param_dtype=args.dtype)
        params = jax.tree.map(lambda x: x.astype(args.dtype), params)
        parameter_bytes = sum(x.nbytes for x in jax.tree.leaves(params))
        for batch in args.batches:
            prompts = np.random.default_rng(batch).integers(0, config.vocab_size, (batch, args.prompt_len)).tolist()
            ours, ours_first = bench_r1jax(config, params, prompts, args.new_tokens, args.repeats)
            ours_split = (bench_r1jax(config, params, prompts, args.new_tokens, args.repeats, split)[0]
                          if split > 1 else np.nan)
            theirs, theirs_first = (bench_transformers(reference, prompts, args.new_tokens, args.repeats)
                                    if reference is not None else (np.nan, np.nan))
            decode_steps_per_s = (args.new_tokens - 1) / (ours - ours_first)
            bound_share = decode_steps_per_s * parameter_bytes / (bandwidth_gbs * 1e9)
            rows.append((size, batch, batch * args.new_tokens / ours, batch * args.new_tokens / theirs,
                         batch * args.new_tokens / ours_split, ours_first, theirs_first, bound_share))
            print(f"  {size} batch {batch}: r1jax {ours:.2f}s" + (f" (x{split} {ours_split:.2f}s)" if split > 1 else "")
                  + f", transformers {theirs:.2f}s", flush=True)
        del reference, params

    print(f"\nprompt {args.prompt_len} tokens, {args.new_tokens} new tokens, greedy, r1jax {args.dtype}, "
          f"transformers float32")
    if split > 1:
        print(f"x{split}: r1jax with the batch split over {split} CPU devices")
    split_header = f" {f'x{split} tok/s':>10} {f'x{split} ratio':>9}" if split > 1 else ""
    header = (f"{'model':<14} {'batch':>5} {'r1jax tok/s':>12} {'hf tok/s':>10} {'ratio':>6}{split_header} "
              f"{'r1jax TTFT ms':>14} {'hf TTFT ms':>11} {'decode/bw bound':>16}")
    print(header)
    print("-" * len(header))
    for size, batch, ours, theirs, ours_split, ours_first, theirs_first, bound_share in rows:
        split_cells = f" {ours_split:>10.1f} {ours_split / theirs:>9.2f}" if split > 1 else ""
        print(f"{size:<14} {batch:>5} {ours:>12.1f} {theirs:>10.1f} {ours / theirs:>6.2f}{split_cells} "
              f"{ours_first * 1e3:>14.1f} {theirs_first * 1e3:>11.1f} {bound_share:>16.1%}")


if __name__ == "__main__":
    main()
