"""Typed per-layer inference state, allocated once for ``batch_size x max_length``.

Legend: B batch, C conv channels, W conv width, H SSM heads, P head dim, N d_state,
G groups, R = H // G, L prefix-buffer slots (= the layer's TransPoint), S = max_length,
K attention kv heads, E attention head dim.

- ``AttentionCache``: static KV cache, heads-first ``[B,K,S,E]``, written in place by position.
- ``SSMCache`` (mamba2): conv state ``[B,C,W-1]`` and SSM state ``[B,H,P,N]`` (fp32).
- ``TransMambaCache``: conv + SSM state as above, plus the prefix buffer of the tokens
  before the TransPoint: ``key [B,G,L,N]`` (= B, stored rotated when RoPE is on),
  ``value [B,G,L,R*P]`` (= x, the group's heads side by side) and ``dt [B,H,L]`` (fp32).
  When a row reaches the TransPoint the Memory Converter folds the buffer into the SSM
  state; once every row has, the buffer is released (set to None).

Host-side bookkeeping (``ModelCache.lengths``: tokens each row has consumed) decides each
layer's decode phase, so no device value is ever read to choose a code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch

ATTN, MIXED, SSM = "attn", "mixed", "ssm"


def _static(tensor: torch.Tensor) -> torch.Tensor:
    # CUDA graphs (mode="reduce-overhead") need cache tensors at fixed addresses.
    if not tensor.is_cuda:
        return tensor
    torch._dynamo.mark_static_address(tensor)
    return tensor


@dataclass
class AttentionCache:
    key: torch.Tensor
    value: torch.Tensor


@dataclass
class SSMCache:
    conv: torch.Tensor
    ssm: torch.Tensor


@dataclass
class TransMambaCache:
    conv: torch.Tensor
    ssm: torch.Tensor
    transpoint: int
    key: torch.Tensor | None
    value: torch.Tensor | None
    dt: torch.Tensor | None

    @property
    def released(self) -> bool:
        return self.key is None


LayerCache = AttentionCache | SSMCache | TransMambaCache


def select_rows(layer: LayerCache, rows: slice) -> LayerCache:
    """The same cache seen through a row slice (views: writes land in the batch cache)."""
    changes = {f.name: getattr(layer, f.name)[rows] for f in fields(layer)
               if isinstance(getattr(layer, f.name), torch.Tensor)}
    return replace(layer, **changes)


def cache_bytes(layer: LayerCache) -> int:
    return sum(t.numel() * t.element_size() for f in fields(layer)
               if isinstance(t := getattr(layer, f.name), torch.Tensor))


@dataclass
class ModelCache:
    """All layers' caches plus the host-side token count of every row."""

    layers: list[LayerCache]
    max_length: int
    lengths: list[int]
    positions: torch.Tensor  # [B] long on the device: next position of each row (mirrors ``lengths``)
    transpoints: list[int] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return len(self.lengths)

    def nbytes(self) -> int:
        return sum(cache_bytes(layer) for layer in self.layers)

    def phases(self) -> tuple[str, ...]:
        """Per-layer decode phase for the next token (host-only; static for a compiled step)."""
        out = []
        for layer in self.layers:
            if not isinstance(layer, TransMambaCache):
                out.append(ATTN if isinstance(layer, AttentionCache) else SSM)
            elif layer.released or all(n > layer.transpoint for n in self.lengths):
                out.append(SSM)
            elif all(n < layer.transpoint for n in self.lengths):
                out.append(ATTN)
            else:
                out.append(MIXED)
        return tuple(out)

    def advance(self, n_tokens: int, rows: list[int] | None = None) -> None:
        """Record that ``rows`` (all by default) consumed ``n_tokens``; release folded buffers."""
        for row in range(self.batch_size) if rows is None else rows:
            self.lengths[row] += n_tokens
            if self.lengths[row] > self.max_length:
                raise ValueError(f"row {row}: {self.lengths[row]} tokens exceed the cache's "
                                 f"max_length {self.max_length}")
        self.release_folded()

    def release_folded(self) -> None:
        for layer in self.layers:
            if isinstance(layer, TransMambaCache) and not layer.released \
                    and all(n > layer.transpoint for n in self.lengths):
                layer.key = layer.value = layer.dt = None

    def sync_positions(self) -> None:
        self.positions.copy_(torch.tensor(self.lengths, dtype=torch.long))


def allocate_layer_cache(mixer, batch_size: int, max_length: int, transpoint: int,
                         dtype: torch.dtype, device: torch.device) -> LayerCache:
    from zoo.layers.mixers.attention import AttentionMixer
    from zoo.layers.mixers.mamba2 import Mamba2Mixer
    from zoo.layers.mixers.transmamba import TransMambaMixer

    def empty(*shape, dtype=dtype):
        return _static(torch.zeros(*shape, dtype=dtype, device=device))

    if isinstance(mixer, AttentionMixer):
        shape = (batch_size, mixer.n_kv_heads, max_length, mixer.head_dim)
        return AttentionCache(empty(*shape), empty(*shape))
    if isinstance(mixer, (Mamba2Mixer, TransMambaMixer)):
        ssd = mixer.ssd
        conv = empty(batch_size, ssd.conv_channels, ssd.conv1d.width - 1)
        ssm = empty(batch_size, ssd.n_heads, ssd.headdim, ssd.d_state, dtype=torch.float32)
        if isinstance(mixer, Mamba2Mixer):
            return SSMCache(conv, ssm)
        slots = min(transpoint, max_length)
        if slots == 0:
            return TransMambaCache(conv, ssm, 0, None, None, None)
        heads_per_group = ssd.n_heads // ssd.n_groups
        return TransMambaCache(
            conv, ssm, slots,
            empty(batch_size, ssd.n_groups, slots, ssd.d_state),
            empty(batch_size, ssd.n_groups, slots, heads_per_group * ssd.headdim),
            empty(batch_size, ssd.n_heads, slots, dtype=torch.float32))
    raise TypeError(f"no inference cache for mixer {type(mixer).__name__}")
