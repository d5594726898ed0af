"""`mode: benchmark`: compile the forward pass ahead of time, print its memory, then time it.

The quickest end-to-end check of a model, a checkpoint and a mesh on new hardware. Also the hardware
figures the benchmarks under tools/ divide by: a device's peak matmul rate and its measured copy bandwidth.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections

from r1jax import model as model_lib
from r1jax import runtime, sharding

# Dense bf16 peak TFLOP/s per JAX device, by a substring of `device.device_kind` (vendor data sheets;
# without sparsity). A TPU v4/v5p chip is one JAX device.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "L4": 121.0,
                    "TPU v4": 275.0, "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v5p": 459.0, "TPU v5": 459.0,
                    "TPU v6 lite": 918.0, "TPU v6e": 918.0}


def _seconds_per_call(fn, *args, repeats: int = 5) -> float:
    jax.block_until_ready(fn(*args))  # compile and warm up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return best


def peak_tflops(device: jax.Device | None = None) -> tuple[float, str]:
    """(TFLOP/s, where the figure comes from): the data-sheet bf16 peak of a known accelerator, else a
    measured float32 4096^3 matmul (the CPU's practical peak)."""
    device = device or jax.devices()[0]
    for kind, tflops in PEAK_BF16_TFLOPS.items():
        if kind in device.device_kind:
            return tflops, f"{device.device_kind} bf16 data sheet"
    n = 4096
    a = jax.device_put(jnp.ones((n, n), jnp.float32), device)
    seconds = _seconds_per_call(jax.jit(jnp.matmul), a, a, repeats=3)
    return 2 * n ** 3 / seconds / 1e12, f"measured f32 {n}^3 matmul on {device.platform}"


def copy_bandwidth_gbs(device: jax.Device | None = None, megabytes: int = 1024) -> float:
    """Measured memory bandwidth, GB/s: bytes read plus written by an elementwise pass over a large array."""
    device = device or jax.devices()[0]
    x = jax.device_put(jnp.ones((megabytes * 2 ** 20 // 4,), jnp.float32), device)
    seconds = _seconds_per_call(jax.jit(lambda x: x + 1), x)
    return 2 * x.nbytes / seconds / 1e9


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    mesh, rules = runtime.mesh_and_rules(config)
    model_config = runtime.model_config(config)
    params = runtime.load_or_init_params(config, model_config, mesh, rules)
    B, L = config.batch_size, config.seq_len
    tokens_BxL = jax.device_put(
        jax.random.randint(jax.random.key(config.seed + 1), (B, L), 0, model_config.vocab_size),
        sharding.batch_sharding(mesh, rules, 2))

    def forward_logsumexp(params, tokens_BxL):
        # A scalar of the logits keeps the host transfer out of the timing.
        return jnp.mean(jax.nn.logsumexp(model_lib.forward(model_config, params, tokens_BxL).astype(jnp.float32), -1))

    with sharding.use_mesh(mesh, rules):
        start = time.perf_counter()
        compiled = jax.jit(forward_logsumexp).lower(params, tokens_BxL).compile()
        compile_s = time.perf_counter() - start
        memory = compiled.memory_analysis()
        print(f"model {config.model.checkpoint or config.model.name}: {model_config.num_params() / 1e6:.1f}M params, "
              f"mesh {dict(mesh.shape)}, compiled in {compile_s:.1f}s")
        if memory is not None:
            print(f"per-device memory: arguments {memory.argument_size_in_bytes / 2**20:.1f} MiB, "
                  f"temporaries {memory.temp_size_in_bytes / 2**20:.1f} MiB")
        compiled(params, tokens_BxL).block_until_ready()  # warm-up
        start = time.perf_counter()
        for _ in range(config.steps):
            value = compiled(params, tokens_BxL)
        value.block_until_ready()
        seconds = (time.perf_counter() - start) / config.steps

    tokens_per_s = B * L / seconds
    tflops_per_device = model_lib.forward_flops_per_token(model_config, L) * tokens_per_s / 1e12 / mesh.size
    metrics = {"step_time_s": seconds, "tokens_per_s": tokens_per_s, "tflops_per_device": tflops_per_device,
               "compile_s": compile_s, "mean_logsumexp": float(value)}
    print(f"{'batch x len':>12} {'step ms':>9} {'tokens/s':>10} {'TFLOP/s/dev':>12}")
    print(f"{f'{B}x{L}':>12} {seconds * 1e3:9.2f} {tokens_per_s:10.0f} {tflops_per_device:12.3f}")
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(metrics) + "\n")
    return metrics
