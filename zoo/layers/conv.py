"""Depthwise causal conv1d over the channel axis of [B,T,C], with a decode state.

``conv_state`` [B,C,W-1] holds the last W-1 inputs before the call (zeros at the start),
so a prefill followed by single-token steps equals one long call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.ops.conv.reference import causal_conv, causal_conv_silu_split


class CausalConv1d(nn.Module):
    def __init__(self, channels: int, width: int, bias: bool = True) -> None:
        super().__init__()
        self.channels = channels
        self.width = width
        self.weight = nn.Parameter(torch.empty(channels, 1, width))
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.width)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor, conv_state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B,T,C] -> (y [B,T,C], new conv_state [B,C,W-1]); no activation."""
        width = self.width
        if conv_state is None:
            padded = F.pad(x, (0, 0, width - 1, 0))
        else:
            padded = torch.cat([conv_state.transpose(1, 2).to(x.dtype), x], dim=1)
        y = causal_conv(padded, self.weight[:, 0], self.bias)
        new_state = padded[:, padded.shape[1] - (width - 1) :].transpose(1, 2)
        return y, new_state

    def state_after(self, x: torch.Tensor) -> torch.Tensor:
        """The conv state [B,C,W-1] after x [B,T,C] from a zero state (what ``forward`` returns)."""
        keep = self.width - 1
        tail = x[:, max(x.shape[1] - keep, 0) :]
        if tail.shape[1] < keep:
            tail = F.pad(tail, (0, 0, keep - tail.shape[1], 0))
        return tail.transpose(1, 2)

    def silu_split(
        self, x: torch.Tensor, conv_state: torch.Tensor | None, split_sizes: Sequence[int]
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """x [B,T,C] -> SiLU(conv(x)) as views of ``split_sizes`` channel widths, and the conv
        state after x: the fused reference from a zero history (``conv_state`` None), ``forward``
        from a state."""
        if conv_state is None:
            parts = causal_conv_silu_split(x, self.weight[:, 0], self.bias, split_sizes=split_sizes)
            return parts, self.state_after(x)
        y, new_state = self(x, conv_state)
        return list(torch.split(F.silu(y), list(split_sizes), dim=-1)), new_state
