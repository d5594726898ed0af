"""Model FLOPs utilisation of r1jax's SFT and GRPO train steps, on random weights.

For each model: one SFT step (`r1jax.sft.make_train_step` on packed rows) and one GRPO step
(`r1jax.rl.trainer.make_train_step`: prompt + completion rows, the loss on the completion), each
compiled ahead (per-device memory printed), warmed up, then timed over `--steps` calls with AdamW
and the parameters donated as in training. MFU is model FLOPs per second over the device's peak:

    model FLOPs = 3 x forward FLOPs (PaLM's count, `model.forward_flops_per_token`: every matmul,
                  attention over the full context); the GRPO step's vocabulary projection runs only on
                  completion positions, so its head FLOPs count only those. Rematerialisation is not counted.
    peak        = the data-sheet dense bf16 rate of a known accelerator, else a measured f32 matmul (CPU)

    python tools/bench_mfu.py                                        # tiny, float32 (CPU)
    python tools/bench_mfu.py --models qwen2.5-1.5b --dtype bfloat16 --attention cudnn \\
        --batch 8 --seq-len 2048 --prompt-len 512 --remat dots_with_no_batch_dims_saveable   # one H100
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from r1jax import benchmark, config as config_lib, optim, runtime, sharding, sft
from r1jax import model as model_lib
from r1jax.rl import trainer


def step_flops(model_config: model_lib.ModelConfig, batch: int, seq_len: int, logit_positions: int) -> float:
    """Model FLOPs of one train step over `batch` rows of `seq_len` tokens, `logit_positions` of which
    per row go through the vocabulary projection."""
    head_flops_per_token = 2.0 * model_config.vocab_size * model_config.hidden_size
    body_flops_per_token = model_lib.forward_flops_per_token(model_config, seq_len) - head_flops_per_token
    return 3.0 * batch * (seq_len * body_flops_per_token + logit_positions * head_flops_per_token)


def sft_inputs(model_config, batch: int, seq_len: int, rng: np.random.Generator):
    tokens = rng.integers(0, model_config.vocab_size, (batch, seq_len), dtype=np.int32)
    positions = np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch, seq_len)).copy()
    rows = sft.PackedRows(tokens, positions, np.ones_like(tokens), np.ones((batch, seq_len), bool))
    return rows, sft.loss_divisor(sft.trained_per_row(rows))


def grpo_inputs(model_config, batch: int, seq_len: int, prompt_len: int, rng: np.random.Generator):
    completion_len = seq_len - prompt_len
    tokens = rng.integers(0, model_config.vocab_size, (batch, seq_len), dtype=np.int32)
    minibatch = dict(
        tokens=tokens, positions=np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch, seq_len)).copy(),
        segment_ids=np.ones_like(tokens), old_logp=np.full((batch, completion_len), -5.0, np.float32),
        advantages=rng.standard_normal(batch).astype(np.float32),
        mask=np.ones((batch, completion_len), np.float32))
    return minibatch, np.float32(batch * completion_len), np.float32(batch)


def grpo_run_config(batch: int, completion_len: int):
    config = config_lib.grpo_config()
    config.rollout.update(max_new_tokens=completion_len, temperature=1.0)
    config.grpo.update(minibatch_size=batch, loss_type="dapo")
    return config


def time_step(step, state, args, steps: int) -> tuple[float, object, float]:
    """(seconds per step, per-device memory analysis, compile seconds); `state` is donated."""
    start = time.perf_counter()
    compiled = step.lower(state, *args).compile()
    compile_s = time.perf_counter() - start
    state, metrics = compiled(state, *args)  # warm-up
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = compiled(state, *args)
    jax.block_until_ready((state, metrics))
    return (time.perf_counter() - start) / steps, compiled.memory_analysis(), compile_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny"])
    parser.add_argument("--dtype", default="float32", help="compute dtype; parameters stay float32")
    parser.add_argument("--attention", default="xla", choices=("xla", "cudnn"))
    parser.add_argument("--remat", default="none", choices=sorted(model_lib.REMAT_POLICIES))
    parser.add_argument("--batch", type=int, default=8, help="rows per step (a multiple of the device count)")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per row")
    parser.add_argument("--prompt-len", type=int, default=64, help="GRPO: prompt tokens of each row")
    parser.add_argument("--steps", type=int, default=5, help="timed steps")
    parser.add_argument("--kinds", nargs="+", default=["sft", "grpo"], choices=("sft", "grpo"))
    args = parser.parse_args()
    if not 0 < args.prompt_len < args.seq_len:
        parser.error(f"--prompt-len {args.prompt_len} must be in (0, --seq-len {args.seq_len})")

    peak, peak_source = benchmark.peak_tflops()
    mesh = sharding.make_mesh(dict(data=1, fsdp=-1, tensor=1))
    rules = sharding.get_rules("fsdp_tensor")
    print(f"jax {jax.__version__}, {mesh.size} x {jax.devices()[0].device_kind}, mesh {dict(mesh.shape)}; "
          f"peak {peak:.3g} TFLOP/s per device ({peak_source})")
    rng = np.random.default_rng(0)
    table = []
    for name in args.models:
        model_config = model_lib.get_model_config(name, dtype=args.dtype, remat=args.remat,
                                                  attention_impl=args.attention)
        shardings = runtime.param_shardings(model_config, mesh, rules)
        for kind in args.kinds:
            optimizer, schedule = optim.make_optimizer(optim.optimizer_config(learning_rate=1e-5), 1000)
            with sharding.use_mesh(mesh, rules):
                params = model_lib.init_params(model_config, jax.random.key(0), shardings)
                state = dict(params=params, opt_state=runtime.init_optimizer_state(optimizer, params, mesh),
                             step=jnp.zeros((), jnp.int32))
                state_shardings = jax.tree.map(lambda x: x.sharding, state)
                batch_sharding = sharding.batch_sharding(mesh, rules, 2)
                if kind == "sft":
                    rows, count = sft_inputs(model_config, args.batch, args.seq_len, rng)
                    step = sft.make_train_step(model_config, optimizer, schedule, state_shardings)
                    inputs = (None, jax.device_put(rows, batch_sharding), count)
                    flops = step_flops(model_config, args.batch, args.seq_len, args.seq_len)
                else:
                    minibatch, num_items, num_sequences = grpo_inputs(model_config, args.batch, args.seq_len,
                                                                      args.prompt_len, rng)
                    config = grpo_run_config(args.batch, args.seq_len - args.prompt_len)
                    step = trainer.make_train_step(model_config, config, optimizer, schedule, state_shardings)
                    minibatch = {k: jax.device_put(v, sharding.batch_sharding(mesh, rules, v.ndim))
                                 for k, v in minibatch.items()}
                    inputs = (minibatch, num_items, num_sequences)
                    flops = step_flops(model_config, args.batch, args.seq_len, args.seq_len - args.prompt_len)
                seconds, memory, compile_s = time_step(step, state, inputs, args.steps)
            tflops = flops / seconds / 1e12 / mesh.size
            gib = (memory.argument_size_in_bytes + memory.temp_size_in_bytes) / 2 ** 30 if memory else float("nan")
            table.append((name, kind, seconds, args.batch * args.seq_len / seconds, tflops, tflops / peak, gib,
                          compile_s))
            print(f"  {name} {kind}: {seconds * 1e3:.1f} ms/step, compiled in {compile_s:.1f} s", flush=True)

    print(f"\nbatch {args.batch} x {args.seq_len} tokens (GRPO: {args.prompt_len} prompt), dtype {args.dtype}, "
          f"attention {args.attention}, remat {args.remat}")
    header = (f"{'model':<14} {'step':<5} {'ms/step':>9} {'tokens/s':>10} {'TFLOP/s/dev':>12} {'MFU':>7} "
              f"{'GiB/dev':>8} {'compile s':>10}")
    print(header)
    print("-" * len(header))
    for name, kind, seconds, tokens_per_s, tflops, mfu, gib, compile_s in table:
        print(f"{name:<14} {kind:<5} {seconds * 1e3:>9.1f} {tokens_per_s:>10.0f} {tflops:>12.3f} {mfu:>7.1%} "
              f"{gib:>8.2f} {compile_s:>10.1f}")


if __name__ == "__main__":
    main()
