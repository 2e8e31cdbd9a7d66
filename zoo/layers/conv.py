"""Depthwise causal conv1d over the channel axis of [B,T,C], with a decode state.

``conv_state`` [B,C,W-1] holds the last W-1 inputs before the call (zeros at the start),
so a prefill followed by single-token steps equals one long call.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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

    def forward(
        self, x: torch.Tensor, conv_state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B,T,C] -> (y [B,T,C], new conv_state [B,C,W-1]); no activation."""
        xt = x.transpose(1, 2)
        if conv_state is None:
            xt = F.pad(xt, (self.width - 1, 0))
        else:
            xt = torch.cat([conv_state.to(xt.dtype), xt], dim=-1)
        y = F.conv1d(xt, self.weight.to(xt.dtype), None if self.bias is None else self.bias.to(xt.dtype),
                     groups=self.channels)
        new_state = xt[:, :, xt.shape[-1] - (self.width - 1):]
        return y.transpose(1, 2), new_state
