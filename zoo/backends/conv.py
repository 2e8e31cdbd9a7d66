"""Conv backends of the core: ``torch`` (the SSD mixers' causal conv + SiLU in pure PyTorch).

``supports(device=, dtype=, **shapes)`` reads these optional shape keys: ``channels`` (C),
``width`` (W), ``seq_len``; unknown keys are ignored.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from zoo.backends.base import FLOAT_DTYPES, ConvBackend
from zoo.ops.conv.reference import causal_conv_silu_split
from zoo.registry import CONV


@CONV.register("torch")
class TorchConv(ConvBackend):
    """Shifted multiply-adds in PyTorch, fused by inductor (any device, any float dtype)."""

    op = staticmethod(causal_conv_silu_split)
    conformance_params: ClassVar[list[dict]] = [{}, {"output": "recompute"}]

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        if dtype not in FLOAT_DTYPES:
            return False, f"dtype {dtype} is not supported; use one of fp16, bf16, fp32, fp64"
        return True, ""
