"""SSM (SSD scan) backends of the core: ``scan`` (reference) and ``chunked`` (pure PyTorch).

``supports(device=, dtype=, **shapes)`` reads these optional shape keys: ``n_heads``,
``n_groups``, ``head_dim``, ``state_dim``, ``seq_len``; unknown keys are ignored.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from zoo.backends.base import BackendParams, SSMBackend
from zoo.ops.ssd.chunked import ssd_chunked
from zoo.ops.ssd.reference import ssd_scan
from zoo.registry import SSM

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_float_and_groups(
    dtype: torch.dtype, shapes: dict[str, int]
) -> tuple[bool, str]:
    """The checks every pure-PyTorch SSD op shares: a float dtype, heads a multiple of groups."""
    if dtype not in FLOAT_DTYPES:
        return (
            False,
            f"dtype {dtype} is not supported; use one of fp16, bf16, fp32, fp64",
        )
    n_heads, n_groups = shapes.get("n_heads"), shapes.get("n_groups")
    if n_heads and n_groups and n_heads % n_groups:
        return False, f"n_heads ({n_heads}) must be a multiple of n_groups ({n_groups})"
    return True, ""


@SSM.register("scan")
class ScanSSM(SSMBackend):
    """Sequential reference scan, one token at a time (any device; slow; for tests and decode).

    torch.compile unrolls its Python loop over tokens: fine for a decode step (T = 1),
    not for prefill or training.
    """

    def supports(
        self, *, device: torch.device, dtype: torch.dtype, **shapes: int
    ) -> tuple[bool, str]:
        return check_float_and_groups(dtype, shapes)

    def __call__(
        self,
        x: torch.Tensor,
        dt: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        *,
        D: torch.Tensor | None = None,
        initial_state: torch.Tensor | None = None,
        return_final_state: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return ssd_scan(
            x,
            dt,
            A,
            B,
            C,
            D=D,
            initial_state=initial_state,
            return_final_state=return_final_state,
        )


class ChunkedParams(BackendParams):
    chunk_size: int = Field(
        64, ge=1, description="tokens per chunk; memory grows with its square"
    )


@SSM.register("chunked")
class ChunkedSSM(SSMBackend):
    """Chunked SSD in pure PyTorch (any device; compiles fullgraph with dynamic shapes)."""

    Params = ChunkedParams
    conformance_params: ClassVar[list[dict]] = [{"chunk_size": 16}, {}]

    def __init__(self, params: BackendParams | dict | None = None) -> None:
        super().__init__(params)
        self.chunk_size: int = self.params.chunk_size  # a plain int for forward()

    def supports(
        self, *, device: torch.device, dtype: torch.dtype, **shapes: int
    ) -> tuple[bool, str]:
        return check_float_and_groups(dtype, shapes)

    def __call__(
        self,
        x: torch.Tensor,
        dt: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        *,
        D: torch.Tensor | None = None,
        initial_state: torch.Tensor | None = None,
        return_final_state: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return ssd_chunked(
            x,
            dt,
            A,
            B,
            C,
            D=D,
            initial_state=initial_state,
            return_final_state=return_final_state,
            chunk_size=self.chunk_size,
        )
