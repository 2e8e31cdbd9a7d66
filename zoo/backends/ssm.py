"""SSM (SSD scan) backends of the core: ``scan`` (reference) and ``chunked`` (pure PyTorch).

``supports(device=, dtype=, **shapes)`` reads these optional shape keys: ``n_heads``,
``n_groups``, ``head_dim``, ``state_dim``, ``seq_len``; unknown keys are ignored.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from zoo.backends.base import BackendParams, SSMBackend, check_float_and_groups
from zoo.ops.ssd.chunked import ssd_chunked
from zoo.ops.ssd.reference import ssd_scan
from zoo.registry import SSM


@SSM.register("scan")
class ScanSSM(SSMBackend):
    """Sequential reference scan, one token at a time (any device; slow; for tests and decode).

    torch.compile unrolls its Python loop over tokens: fine for a decode step (T = 1),
    not for prefill or training.
    """

    op = staticmethod(ssd_scan)

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        return check_float_and_groups(dtype, shapes)


class ChunkedParams(BackendParams):
    chunk_size: int = Field(64, ge=1, description="tokens per chunk; memory grows with its square")


@SSM.register("chunked")
class ChunkedSSM(SSMBackend):
    """Chunked SSD in pure PyTorch (any device; compiles fullgraph with dynamic shapes)."""

    Params = ChunkedParams
    conformance_params: ClassVar[list[dict]] = [{"chunk_size": 16}, {}]
    op = staticmethod(ssd_chunked)

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        return check_float_and_groups(dtype, shapes)
