"""Standard multi-head / grouped-query attention mixer with RoPE (the Transformer baseline).

Legend: B batch, T tokens, D d_model, H n_heads, K n_kv_heads, E head_dim.
The attention backend contract groups q/k per value head, so K < H is served by
repeating each k/v head H/K times (a view + copy before the kernel).

``d_conv = W > 0`` adds a depthwise causal conv of width W and SiLU over q, k and v
before RoPE, as Mamba2 (and TransMamba's attention path) does on its x, B, C; fla calls it
a short convolution. It lets each key see the W-1 tokens before it, which is what a
previous-token head otherwise has to learn. Off by default (Llama has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from einops import rearrange
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from zoo.backends.base import AttentionBackend
from zoo.layers.conv import CausalConv1d
from zoo.layers.norm import RMSNorm
from zoo.layers.state import ATTN, LayerCache, static_zeros
from zoo.ops.attention.decode import masked_decode_attention
from zoo.ops.rope import rotary
from zoo.registry import MIXER


@dataclass
class AttentionCache(LayerCache):
    """Static KV cache, heads-first ``key, value [B,K,S,E]`` (S = max_length), written in
    place by position; a decode step masks the slots a row has not filled. With a short
    conv, ``conv [B,C,W-1]`` holds the last W-1 pre-conv q, k, v rows (None without)."""

    key: torch.Tensor
    value: torch.Tensor
    conv: torch.Tensor | None = None

    def phase(self, lengths) -> str:
        return ATTN


class AttentionParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    n_heads: int = Field(8, ge=1, le=1024)
    n_kv_heads: int | None = Field(None, ge=1, description="None = n_heads (MHA)")
    head_dim: int | None = Field(None, ge=2, description="None = d_model // n_heads")
    rope_theta: float = Field(1e4, gt=1, le=1e9)
    qk_norm: bool = False
    bias: bool = False
    d_conv: int = Field(
        0, ge=0, le=16, description="0 = none; W >= 1: depthwise causal conv of width W + SiLU on q, k, v"
    )
    conv_bias: bool = Field(True, description="a bias in the short conv (as Mamba2's conv has)")


@MIXER.register("attention")
class AttentionMixer(nn.Module):
    """Causal multi-head (or GQA) softmax attention with its own q, k, v, o and RoPE."""

    Params: ClassVar = AttentionParams
    backend_slots: ClassVar[dict[str, str]] = {"attention": "sdpa"}
    uses_schedule: ClassVar[bool] = False

    @staticmethod
    def _dims(d_model: int, params: AttentionParams) -> tuple[int, int, int]:
        head_dim = params.head_dim or d_model // params.n_heads
        return params.n_heads, params.n_kv_heads or params.n_heads, head_dim

    @classmethod
    def check_spec(cls, d_model: int, params: AttentionParams) -> list[tuple[str, str]]:
        n_heads, n_kv, head_dim = cls._dims(d_model, params)
        if params.head_dim is None and d_model % n_heads:
            return [("n_heads", f"d_model ({d_model}) must be divisible by n_heads ({n_heads}), or set head_dim")]
        if n_heads % n_kv:
            return [("n_kv_heads", f"n_heads ({n_heads}) must be divisible by n_kv_heads ({n_kv})")]
        if head_dim % 2:
            return [("head_dim", f"RoPE needs an even head_dim, got {head_dim}")]
        return []

    @classmethod
    def backend_shapes(cls, d_model: int, params: AttentionParams) -> dict[str, dict[str, int]]:
        n_heads, _, head_dim = cls._dims(d_model, params)
        return {"attention": {"n_heads": n_heads, "n_groups": n_heads, "head_dim": head_dim, "state_dim": head_dim}}

    def __init__(self, d_model: int, params: AttentionParams, *, backends: dict[str, Any], layer_idx: int = 0) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv_heads, self.head_dim = self._dims(d_model, params)
        self.rope_theta = params.rope_theta
        self.q_proj = nn.Linear(d_model, self.n_heads * self.head_dim, bias=params.bias)
        self.kv_proj = nn.Linear(d_model, 2 * self.n_kv_heads * self.head_dim, bias=params.bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, d_model, bias=params.bias)
        self.q_channels = self.n_heads * self.head_dim
        self.conv_splits = [self.q_channels, 2 * self.n_kv_heads * self.head_dim]  # the short conv's q | kv
        channels = sum(self.conv_splits)
        self.conv1d = CausalConv1d(channels, params.d_conv, bias=params.conv_bias) if params.d_conv else None
        self.q_norm = RMSNorm(self.head_dim) if params.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim) if params.qk_norm else None
        self.attention: AttentionBackend = backends["attention"]
        self.scale = self.head_dim**-0.5

    def qkv(self, hidden_states: torch.Tensor, positions: torch.Tensor, conv_state: torch.Tensor | None = None):
        """[B,T,D] -> q [B,T,H,E], k, v [B,T,K,E] with RoPE applied to q, k, and the conv state
        after these tokens ([B,C,W-1], None without a conv). ``conv_state`` is the state
        before them (None: a zero history)."""
        q, kv = self.q_proj(hidden_states), self.kv_proj(hidden_states)
        new_state = None
        if self.conv1d is not None:
            (q, kv), new_state = self.conv1d.silu_split(torch.cat([q, kv], dim=-1), conv_state, self.conv_splits)
        q = rearrange(q, "b t (h e) -> b t h e", e=self.head_dim)
        k, v = rearrange(kv, "b t (two k e) -> two b t k e", two=2, e=self.head_dim)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return rotary(q, positions, self.rope_theta), rotary(k, positions, self.rope_theta), v, new_state

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        repeat = self.n_heads // self.n_kv_heads
        if repeat > 1:
            k = k.repeat_interleave(repeat, dim=2)
            v = v.repeat_interleave(repeat, dim=2)
        y = self.attention(q, k, v, scale=self.scale, causal=True)
        return self.o_proj(rearrange(y, "b t h e -> b t (h e)"))

    def forward(self, hidden_states: torch.Tensor, *, transpoint: int | None = None) -> torch.Tensor:
        positions = torch.arange(hidden_states.shape[1], device=hidden_states.device)
        q, k, v, _ = self.qkv(hidden_states, positions)
        return self.attend(q, k, v)

    # Inference state (the protocol of zoo.layers.state): a static KV cache.

    def allocate_cache(
        self,
        batch_size: int,
        max_length: int,
        *,
        dtype: torch.dtype,
        device: torch.device,
        transpoint: int | None = None,
    ) -> AttentionCache:
        shape = (batch_size, self.n_kv_heads, max_length, self.head_dim)
        conv = None
        if self.conv1d is not None:
            conv = static_zeros(batch_size, self.conv1d.channels, self.conv1d.width - 1, dtype=dtype, device=device)
        return AttentionCache(
            static_zeros(*shape, dtype=dtype, device=device), static_zeros(*shape, dtype=dtype, device=device), conv
        )

    def prefill(self, hidden_states: torch.Tensor, cache: AttentionCache, start: int) -> torch.Tensor:
        """Tokens start .. start+T-1 of every row onto ``cache``. [B,T,D] -> [B,T,D]."""
        end = start + hidden_states.shape[1]
        positions = torch.arange(start, end, device=hidden_states.device)
        q, k, v, conv_state = self.qkv(hidden_states, positions, cache.conv)
        if conv_state is not None:
            cache.conv.copy_(conv_state)
        cache.key[:, :, start:end] = k.transpose(1, 2)
        cache.value[:, :, start:end] = v.transpose(1, 2)
        return self.attend(q, cache.key[:, :, :end].transpose(1, 2), cache.value[:, :, :end].transpose(1, 2))

    def step(
        self, hidden_states: torch.Tensor, cache: AttentionCache, positions: torch.Tensor, phase: str
    ) -> torch.Tensor:
        """One token per row at ``positions`` [B]: [B,1,D] -> [B,1,D]."""
        q, k, v, conv_state = self.qkv(hidden_states, positions[:, None], cache.conv)
        if conv_state is not None:
            cache.conv.copy_(conv_state)
        rows = torch.arange(q.shape[0], device=q.device)
        cache.key[rows, :, positions] = k[:, 0]
        cache.value[rows, :, positions] = v[:, 0]
        keys, values = cache.key, cache.value
        repeat = self.n_heads // self.n_kv_heads
        if repeat > 1:
            keys = keys.repeat_interleave(repeat, dim=1)
            values = values.repeat_interleave(repeat, dim=1)
        key_mask = torch.arange(keys.shape[2], device=q.device)[None, :] <= positions[:, None]
        y = masked_decode_attention(q.transpose(1, 2), keys, values, key_mask, scale=self.scale)
        return self.o_proj(rearrange(y, "b h t e -> b t (h e)"))
