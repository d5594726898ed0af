"""Test setup: 8 fake CPU devices so sharded code runs real sharded steps on any machine."""
import os
import tempfile


def xla_flags(device_count: int) -> str:
    """XLA_FLAGS for this suite's processes and the runs they start: `device_count` fake CPU devices, and no LLVM
    optimisation of the compiled code. The suite is compile-bound: that halves XLA's compile time and saves a
    quarter of the suite's CPU time, for slower steps. Every test compares numbers at float tolerances (or
    code compiled alike), so it checks the same thing either way."""
    return f"--xla_force_host_platform_device_count={device_count} --xla_backend_optimization_level=0"


# Must happen before JAX is imported anywhere.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {xla_flags(8)}".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Many tests compile the same small functions (in both xdist workers and in the runs they start as
# subprocesses): one persistent compilation cache, bounded, compiles each once.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"r1jax-test-jax-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))
