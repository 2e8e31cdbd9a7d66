"""Attention backends of the core: ``eager`` (reference), ``sdpa`` and ``flex``.

``supports(device=, dtype=, **shapes)`` reads these optional keys: ``n_heads`` (H),
``n_groups`` (G), ``head_dim`` (P), ``state_dim`` (N, the q/k dim), ``seq_len``, and
``requires_grad`` (0/1, default 1: whether gradients will flow through the call).
Unknown keys are ignored.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from zoo.backends.base import AttentionBackend, BackendParams, check_float_and_groups
from zoo.ops.attention.flex import (
    flex_function,
    flex_grouped_attention,
    flex_unavailable_reason,
)
from zoo.ops.attention.reference import grouped_attention
from zoo.ops.attention.sdpa import (
    Grouping,
    fold_slices_requirement,
    resolve_grouping,
    sdpa_grouped_attention,
    slice_heads,
)
from zoo.registry import ATTENTION


@ATTENTION.register("eager")
class EagerAttention(AttentionBackend):
    """Reference grouped attention: explicit scores, fp32 softmax (any device, any float dtype)."""

    op = staticmethod(grouped_attention)

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        return check_float_and_groups(dtype, shapes)


def fold_slices_refusal(grouping: str, shapes: dict[str, int]) -> str:
    """Why an explicit ``grouping: fold_slices`` cannot run at these shapes ('' when it can)."""
    dims = [shapes.get(k) for k in ("n_groups", "n_heads", "state_dim", "head_dim")]
    if grouping != "fold_slices" or None in dims or slice_heads(*dims):
        return ""
    return fold_slices_requirement(*dims)


class GroupingParams(BackendParams):
    grouping: Grouping = Field(
        "auto",
        description="how G q/k groups meet H value heads: 'fold_values' (one softmax per group, "
        "values side by side), 'expand' (q, k copied to H heads, fused kernels), 'fold_slices' "
        "(values cut into slices as wide as q/k, fused kernels), 'auto' "
        "(see zoo.ops.attention.sdpa)",
    )


@ATTENTION.register("sdpa")
class SdpaAttention(AttentionBackend):
    """torch.nn.functional.scaled_dot_product_attention (PyTorch picks flash / efficient / math)."""

    Params = GroupingParams
    op = staticmethod(sdpa_grouped_attention)
    conformance_params: ClassVar[list[dict]] = [
        {"grouping": "expand"},
        {"grouping": "fold_values"},
    ]

    def __init__(self, params: BackendParams | dict | None = None) -> None:
        super().__init__(params)
        self.grouping: Grouping = self.params.grouping

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        refusal = fold_slices_refusal(self.grouping, shapes)
        if refusal:
            return False, refusal
        return check_float_and_groups(dtype, shapes)


class FlexParams(GroupingParams):
    compiled: bool = Field(
        True,
        description="wrap flex_attention in torch.compile (it is only fused when compiled)",
    )


FLEX_CPU_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@ATTENTION.register("flex")
class FlexAttention(AttentionBackend):
    """FlexAttention with a bottom-right causal block mask (CPU: forward only; CUDA: dims >= 16)."""

    Params = FlexParams
    # Each new shape of the compiled path is a fresh inductor compile (~5-10 s on CPU), so the
    # conformance suite checks the eager path; tests/ops/test_attention.py runs the compiled one.
    conformance_small: ClassVar[bool] = True
    conformance_params: ClassVar[list[dict]] = [{"compiled": False}]

    op = staticmethod(flex_grouped_attention)

    def __init__(self, params: BackendParams | dict | None = None) -> None:
        super().__init__(params)
        self.grouping: Grouping = self.params.grouping

    def build_options(self) -> dict:
        return {"grouping": self.params.grouping, "flex": flex_function(self.params.compiled)}

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        reason = flex_unavailable_reason()
        return (not reason), reason

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        device = torch.device(device)
        refusal = fold_slices_refusal(self.grouping, shapes)
        if refusal:
            return False, refusal
        if device.type not in ("cpu", "cuda", "xpu", "hpu", "mps"):
            return (
                False,
                f"FlexAttention runs on cuda, cpu, xpu, hpu or mps, not {device.type}",
            )
        if device.type in ("cpu", "mps"):
            if shapes.get("requires_grad", 1):
                return False, (
                    f"FlexAttention has no backward on {device.type} in torch {torch.__version__} "
                    "(inference only: pass requires_grad=0 when no gradient is needed)"
                )
            if dtype not in FLEX_CPU_DTYPES:
                return (
                    False,
                    f"FlexAttention on {device.type} takes fp32, fp16 or bf16, not {dtype}",
                )
        if device.type == "cuda":
            ok, reason = self._cuda_dims_ok(device, shapes)
            if not ok:
                return ok, reason
        return check_float_and_groups(dtype, shapes)

    def _cuda_dims_ok(self, device: torch.device, shapes: dict[str, int]) -> tuple[bool, str]:
        # Measured on an H200 with torch 2.11: q/k/v dims below 16 are "NYI" in the Triton
        # kernel; a 384-wide folded value ran out of shared memory, 256 worked.
        n_heads, n_groups = shapes.get("n_heads"), shapes.get("n_groups")
        head_dim, state_dim = shapes.get("head_dim"), shapes.get("state_dim")
        mode = resolve_grouping(self.grouping, device, n_groups or 1, n_heads or 1, state_dim, head_dim)
        value_dim = state_dim if mode == "fold_slices" else head_dim  # the slices are as wide as q/k
        if mode == "fold_values" and head_dim and n_heads and n_groups:
            value_dim = head_dim * (n_heads // n_groups)
            if value_dim > 256:
                return False, (
                    f"FlexAttention 'fold_values' on cuda: a folded value of width {value_dim} "
                    "(> 256) exceeds shared memory; use grouping='expand'"
                )
        for name, dim in (
            ("state_dim (q/k dim)", state_dim),
            ("value width", value_dim),
        ):
            if dim is not None and dim < 16:
                return False, f"FlexAttention on cuda needs dims >= 16; {name} is {dim}"
        return True, ""
