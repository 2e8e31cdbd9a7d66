"""Rotary position embedding (half-split / GPT-NeoX layout).

Shape legend: B batch, T tokens, X any number of heads or groups, D rotary dim (even).

Channel i of the first half pairs with channel i + D/2 and is rotated by the angle
position * theta^(-2i/D). Because positions are an input (not range(T)), decode steps and
chunked prefill pass their absolute offsets. fp32 angles and products; output in x.dtype.
"""

from __future__ import annotations

import torch


def rotary_angles(
    positions: torch.Tensor, dim: int, theta: float = 1e4
) -> torch.Tensor:
    """positions [T] or [B,T] -> angles [..., T, D/2] in fp32."""
    exponents = (
        torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim
    )
    inv_freq = theta ** (-exponents)
    return positions.to(torch.float32)[..., None] * inv_freq


def rotary(
    x: torch.Tensor, positions: torch.Tensor, theta: float = 1e4
) -> torch.Tensor:
    """x [B,T,X,D], positions [T] or [B,T] (integer, absolute) -> x rotated, same shape and dtype."""
    dim = x.shape[-1]
    if dim % 2:
        raise ValueError(f"rotary needs an even last dimension, got {dim}")
    if positions.dim() not in (1, 2):
        raise ValueError(
            f"positions must be [T] or [B, T], got shape {list(positions.shape)}"
        )
    angles = rotary_angles(positions, dim, theta)
    angles = angles[None, :, None, :] if positions.dim() == 1 else angles[:, :, None, :]
    cos, sin = torch.cos(angles), torch.sin(angles)
    work = torch.promote_types(x.dtype, torch.float32)
    first, second = x.to(work).chunk(2, dim=-1)
    rotated = torch.cat(
        [first * cos - second * sin, second * cos + first * sin], dim=-1
    )
    return rotated.to(x.dtype)
