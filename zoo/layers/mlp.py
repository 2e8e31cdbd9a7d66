"""SwiGLU feed-forward block: [B,T,D] -> [B,T,D].

``hidden="recompute"`` runs the product silu(gate) * up under an op-level checkpoint: its
input (gate and up, which the product's backward reads anyway) is all the forward keeps,
and the backward forms the product again for down's weight gradient. Under torch.compile the
model stays one graph; the product is then not among the saved activations
(docs/benchmarks.md, "Where a training step's memory goes").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.backends.base import checkpointed


def default_d_ff(d_model: int) -> int:
    """8/3 * d_model rounded up to a multiple of 64 (the LLaMA convention)."""
    return -(-(8 * d_model) // (3 * 64)) * 64


def swiglu_product(gate_up: torch.Tensor) -> torch.Tensor:
    """[..., 2F] (gate, then up) -> silu(gate) * up [..., F]."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int, bias: bool = False, hidden: str = "save") -> None:
        super().__init__()
        if hidden not in ("save", "recompute"):
            raise ValueError(f"SwiGLU hidden must be 'save' or 'recompute', got {hidden!r}")
        self.gate_up = nn.Linear(d_model, 2 * d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.recompute_hidden = hidden == "recompute"  # read once here; forward branches on a bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = self.gate_up(x)
        if self.recompute_hidden and torch.is_grad_enabled():
            hidden = checkpointed(swiglu_product, gate_up)
        else:
            hidden = swiglu_product(gate_up)
        return self.down(hidden)
