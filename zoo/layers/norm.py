"""RMSNorm and the Mamba2 gated, grouped RMSNorm. Shapes: [..., D].

Both compute in ``promote_types(x.dtype, float32)``: fp32 for bf16/fp16/fp32 inputs, fp64 for
fp64 (an fp64 model stays fp64 end to end, so its parity tests mean what they say); the gated
one's math is its ``norm`` backend (the reference: :mod:`zoo.ops.norm`)."""

from __future__ import annotations

import torch
from torch import nn

from zoo.backends.base import NormBackend


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        work = torch.promote_types(x.dtype, torch.float32)
        x32 = x.to(work)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * self.weight.to(work)).to(x.dtype)


def make_norm(kind: str, dim: int, eps: float) -> nn.Module:
    """Resolved at build time (never in forward)."""
    if kind == "rmsnorm":
        return RMSNorm(dim, eps)
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps)
    raise ValueError(f"norm.kind must be 'rmsnorm' or 'layernorm', got {kind!r}")


class GatedRMSNorm(nn.Module):
    """Mamba2's output norm: rmsnorm(y * silu(z)) per group of ``dim // n_groups`` channels.

    Owns the weight (``norm.weight`` in checkpoints, whatever the backend); the math is the
    ``norm`` backend chosen at build time (default ``torch``, :mod:`zoo.ops.norm`).
    ``z=None`` skips the gate (the TransMamba attention path's default).
    """

    def __init__(self, dim: int, n_groups: int = 1, eps: float = 1e-5, backend: NormBackend | None = None) -> None:
        super().__init__()
        self.eps = eps
        self.n_groups = n_groups
        self.weight = nn.Parameter(torch.ones(dim))
        if backend is None:  # the slot's default, for norms built outside the builder
            from zoo.backends.norm import TorchNorm

            backend = TorchNorm()
        self.backend = backend  # chosen at build time, never per call

    def forward(self, y: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        return self.backend(y, z, self.weight, n_groups=self.n_groups, eps=self.eps)
