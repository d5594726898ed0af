"""Random small `transformers` models saved to disk: the reference every HF-facing test compares with."""

from __future__ import annotations

import torch
import transformers

_COMMON = dict(vocab_size=160, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               max_position_embeddings=512)

# name -> (config class, extra config fields); covers tied/untied heads, GQA, MQA, llama3 RoPE scaling.
HF_VARIANTS = {
    "qwen2-tied": (transformers.Qwen2Config, dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "qwen2-untied": (transformers.Qwen2Config, dict(num_key_value_heads=2, tie_word_embeddings=False,
                                                    rope_theta=1_000_000.0)),
    "llama-untied": (transformers.LlamaConfig, dict(
        num_key_value_heads=2, tie_word_embeddings=False, rope_theta=500_000.0, rms_norm_eps=1e-5,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=32))),
    "llama-tied": (transformers.LlamaConfig, dict(num_key_value_heads=4, tie_word_embeddings=True)),
    "qwen3-tied": (transformers.Qwen3Config, dict(num_key_value_heads=2, head_dim=32, tie_word_embeddings=True)),
    "qwen3-untied-mqa": (transformers.Qwen3Config, dict(num_key_value_heads=1, head_dim=16,
                                                        tie_word_embeddings=False)),
}


def make_hf_model(variant: str, seed: int = 0) -> transformers.PreTrainedModel:
    """A float32 model with weights drawn wider than HF's init so every path affects the logits."""
    config_cls, extra = HF_VARIANTS[variant]
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config_cls(**_COMMON, **extra)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
    return model


def hf_logits(model: transformers.PreTrainedModel, tokens) -> "torch.Tensor":
    with torch.no_grad():
        return model(torch.as_tensor(tokens)).logits.numpy()
