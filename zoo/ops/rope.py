"""Rotary position embedding (half-split / GPT-NeoX layout).

Shape legend: B batch, T tokens, X any number of heads or groups, D rotary dim (even).

Channel i of the first half pairs with channel i + D/2 and is rotated by the angle
position * theta^(-2i/D). Because positions are an input (not range(T)), decode steps and
chunked prefill pass their absolute offsets. Angles and products in fp32, or fp64 for fp64
inputs (fp32 angles are off by ~5e-4 at position 8191); output in x.dtype.
"""

from __future__ import annotations

import torch


def rotary_angles(
    positions: torch.Tensor, dim: int, theta: float = 1e4, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """positions [T] or [B,T] -> angles [..., T, D/2] in ``dtype`` (fp32 or fp64)."""
    exponents = torch.arange(0, dim, 2, device=positions.device, dtype=dtype) / dim
    inv_freq = theta ** (-exponents)
    return positions.to(dtype)[..., None] * inv_freq


def _cos_sin(
    positions: torch.Tensor, dim: int, theta: float, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    angles = rotary_angles(positions, dim, theta, dtype)
    return torch.cos(angles), torch.sin(angles)


# Under torch.compile the table is an opaque op so that it is computed once, [T, D/2]. As
# plain ops, inductor fuses cos, sin and the pow of the frequencies into the kernel that
# rotates q or k and computes them again for every head and element: on an H200 that made
# the transformer mixer's four rotary kernels (q, k, forward and backward) take 0.78 ms of
# its 3.3 ms fwd+bwd at T=8192 (16 heads; see docs/benchmarks.md).
_cos_sin_op = torch.library.custom_op("zoo::rotary_cos_sin", mutates_args=())(_cos_sin)


@_cos_sin_op.register_fake
def _(
    positions: torch.Tensor, dim: int, theta: float, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (*positions.shape, dim // 2)
    return positions.new_empty(shape, dtype=dtype), positions.new_empty(shape, dtype=dtype)


def rotary_cos_sin(
    positions: torch.Tensor, dim: int, theta: float = 1e4, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """positions [T] or [B,T] -> (cos, sin) of the angles, [..., T, D/2] in ``dtype`` each."""
    if torch.compiler.is_compiling():
        return _cos_sin_op(positions, dim, theta, dtype)
    return _cos_sin(positions, dim, theta, dtype)  # eager: no op dispatch (a decode step calls this per layer)


def rotary(x: torch.Tensor, positions: torch.Tensor, theta: float = 1e4) -> torch.Tensor:
    """x [B,T,X,D], positions [T] or [B,T] (integer, absolute) -> x rotated, same shape and dtype."""
    dim = x.shape[-1]
    if dim % 2:
        raise ValueError(f"rotary needs an even last dimension, got {dim}")
    if positions.dim() not in (1, 2):
        raise ValueError(f"positions must be [T] or [B, T], got shape {list(positions.shape)}")
    work = torch.promote_types(x.dtype, torch.float32)
    cos, sin = rotary_cos_sin(positions, dim, theta, work)
    if positions.dim() == 1:
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    else:
        cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    first, second = x.to(work).chunk(2, dim=-1)
    rotated = torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)
    return rotated.to(x.dtype)
