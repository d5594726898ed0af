"""r1jax: train reasoning language models the DeepSeek-R1 way, in JAX."""

__version__ = "0.1.0"
