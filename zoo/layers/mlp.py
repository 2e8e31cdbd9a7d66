"""SwiGLU feed-forward block: [B,T,D] -> [B,T,D]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def default_d_ff(d_model: int) -> int:
    """8/3 * d_model rounded up to a multiple of 64 (the LLaMA convention)."""
    return -(-(8 * d_model) // (3 * 64)) * 64


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int, bias: bool = False) -> None:
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)
