"""Norm backends of the core: ``torch`` (the SSD mixers' gated, grouped RMSNorm in pure PyTorch).

``supports(device=, dtype=, **shapes)`` reads these optional shape keys: ``d_inner`` (D, the
normed channels) and ``n_groups`` (G); unknown keys are ignored.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from zoo.backends.base import FLOAT_DTYPES, NormBackend
from zoo.ops.norm.reference import gated_rms_norm
from zoo.registry import NORM


@NORM.register("torch")
class TorchNorm(NormBackend):
    """Gate, group mean square and scale in PyTorch, fused by inductor (any device, any float dtype)."""

    op = staticmethod(gated_rms_norm)
    conformance_params: ClassVar[list[dict]] = [{}, {"output": "save"}]

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        if dtype not in FLOAT_DTYPES:
            return False, f"dtype {dtype} is not supported; use one of fp16, bf16, fp32, fp64"
        d_inner, n_groups = shapes.get("d_inner"), shapes.get("n_groups")
        if d_inner and n_groups and d_inner % n_groups:
            return False, f"d_inner ({d_inner}) must be a multiple of n_groups ({n_groups})"
        return True, ""
