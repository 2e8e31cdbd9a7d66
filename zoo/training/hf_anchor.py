"""The outside anchor of the training-throughput benchmark: transformers' ``LlamaForCausalLM``
with the shape of a transformer preset, trained the same way as the zoo's models."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.layers.mixers.attention import AttentionMixer


class _Logits(nn.Module):
    """A transformers causal LM as ``ids -> logits`` (no KV cache), to train like ours."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def llama_like(spec: Any, max_len: int, device: torch.device) -> nn.Module:
    """``LlamaForCausalLM`` with the shape of a transformer ``ModelSpec`` (same width, heads,
    layers, SwiGLU width, vocabulary, tying, RMSNorm eps; RoPE theta 1e4, no biases)."""
    layer = spec.layers[0]
    if any(block != layer for block in spec.layers) or layer.mixer.name != "attention":
        raise ValueError(f"{spec.name}: the Llama anchor needs a transformer with identical attention layers")
    params = AttentionMixer.Params.model_validate(layer.mixer.params)  # the mixer's own defaults
    n_heads, n_kv_heads, head_dim = AttentionMixer._dims(spec.d_model, params)
    if params.d_conv or params.qk_norm or params.bias:
        raise ValueError(f"{spec.name}: the Llama anchor has no short conv, qk norm or biases; set them off")
    if params.rope_theta != 1e4 or head_dim != spec.d_model // n_heads:
        raise ValueError(f"{spec.name}: the Llama anchor has RoPE theta 1e4 and head_dim d_model / n_heads")
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=spec.vocab_size,
        hidden_size=spec.d_model,
        intermediate_size=layer.mlp.d_ff,
        num_hidden_layers=spec.n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=max_len,
        rms_norm_eps=spec.norm.eps,
        tie_word_embeddings=spec.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
        attn_implementation="sdpa",
    )
    with torch.device(device):
        return _Logits(LlamaForCausalLM(config))
