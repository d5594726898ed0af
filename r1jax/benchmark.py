"""`mode: benchmark`: compile the forward pass ahead of time, print its memory, then time it.

The quickest end-to-end check of a model, a checkpoint and a mesh on new hardware.
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
