"""Mamba2's gated, grouped RMSNorm in pure PyTorch (the reference; any device, any float dtype).

Legend: R rows (every leading dim), D channels (d_inner), G groups of D / G channels.
``out = rmsnorm(y * silu(z)) * weight`` with the mean square taken per group of D / G
channels; ``z = None`` skips the gate. The math runs in ``promote_types(y.dtype, float32)``
(fp32 for bf16/fp16/fp32, fp64 for fp64), the output has the dtype of ``y``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gated_rms_norm(y: Tensor, z: Tensor | None, weight: Tensor, *, n_groups: int, eps: float) -> Tensor:
    """y [..., D], z [..., D] or None, weight [D] -> [..., D] in the dtype of y."""
    work = torch.promote_types(y.dtype, torch.float32)
    gated = y.to(work)
    if z is not None:
        gated = gated * F.silu(z.to(work))
    shape = gated.shape
    grouped = gated.reshape(*shape[:-1], n_groups, shape[-1] // n_groups)
    grouped = grouped * torch.rsqrt(grouped.pow(2).mean(-1, keepdim=True) + eps)
    return (grouped.reshape(shape) * weight.to(work)).to(y.dtype)
