"""Causal depthwise conv1d over [B, T, C] in pure PyTorch (the reference; any device, any dtype).

Legend: B batch, T tokens, C channels, W taps; weight [C, W], bias [C].
``out[t] = bias + sum_k weight[:, k] * x[t - (W-1) + k]`` with x = 0 before t = 0 (or the
W-1 tokens of a conv state). The Mamba2 conv; the SSD mixers apply SiLU after it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def causal_conv(padded: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """padded [B, W-1+T, C] (W-1 tokens of history first), weight [C, W], bias [C] -> [B, T, C].

    W shifted multiply-adds in the dtype of ``padded``: exact, any dtype, fused by inductor
    (F.conv1d's CPU depthwise path took ~1 s per call in fp64 on a 2-core machine).
    """
    width = weight.shape[1]
    seq_len = padded.shape[1] - (width - 1)
    weight = weight.to(padded.dtype)
    out = padded[:, 0:seq_len] * weight[:, 0]
    for tap in range(1, width):
        out = out + padded[:, tap : tap + seq_len] * weight[:, tap]
    if bias is not None:
        out = out + bias.to(padded.dtype)
    return out


def causal_conv_silu_split(
    x: Tensor, weight: Tensor, bias: Tensor | None = None, *, split_sizes: Sequence[int]
) -> list[Tensor]:
    """x [B, T, C] from a zero history -> silu(conv) as views of ``split_sizes`` channel widths."""
    padded = F.pad(x, (0, 0, weight.shape[1] - 1, 0))
    return list(torch.split(F.silu(causal_conv(padded, weight, bias)), list(split_sizes), dim=-1))


def conv_reference(x: Tensor, weight: Tensor, bias: Tensor | None, activation: bool) -> Tensor:
    """The formula in fp32 math (fp64 stays fp64), output in x.dtype: what fast paths are checked against."""
    compute = torch.promote_types(x.dtype, torch.float32)
    padded = F.pad(x.to(compute), (0, 0, weight.shape[1] - 1, 0))
    out = causal_conv(padded, weight.to(compute), bias.to(compute) if bias is not None else None)
    return (F.silu(out) if activation else out).to(x.dtype)
