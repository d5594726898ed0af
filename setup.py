"""r1jax: train reasoning language models (GRPO, SFT, distillation) in JAX."""
from setuptools import find_packages, setup

setup(
    name="r1jax",
    version="0.1.0",
    description="JAX/Flax stack for training reasoning language models the DeepSeek-R1 way",
    python_requires=">=3.11",
    packages=find_packages(include=["r1jax", "r1jax.*"]),
    package_data={"r1jax": ["rules/*.json"]},  # the sharding rule presets (r1jax.sharding)
    install_requires=[
        "jax>=0.10",
        "flax>=0.12",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.12",
        "ml_collections>=1.0",
        "numpy>=1.26",
        "ml_dtypes>=0.5",
        "sentencepiece>=0.2",
        "protobuf>=4",  # sentencepiece model-proto access in r1jax.tokenizer
        "tokenizers>=0.20",
        "jinja2>=3.1",
        "tensorflow-datasets>=4.9.8",
        "array_record>=0.7",
        "tqdm>=4.60",
        "absl-py>=1.4",
        "matplotlib>=3.8",  # training curves to PNG (r1jax.plotting)
        "tensorboardX>=2.6",  # TensorBoard event files without TensorFlow (r1jax.metrics)
    ],
    extras_require={
        # Reference implementations the tests compare against; never imported by r1jax itself.
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "transformers>=4.51",
            "torch>=2.4",
            "safetensors>=0.4",
            "math-verify>=0.7",  # the math checker's comparison (tests/test_rewards_math.py)
            "sympy>=1.13",
        ],
    },
)
