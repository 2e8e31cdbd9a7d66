"""Memory Converter backends of the core: ``scan`` (reference) and ``chunked``.

Both return the SSM state after a prefix, from its k (= B), v (= x) and dt; see
docs/transmamba.md. Shape keys for ``supports`` as in :mod:`zoo.backends.ssm`.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from zoo.backends.base import BackendParams, ConverterBackend
from zoo.backends.ssm import ChunkedParams, check_float_and_groups
from zoo.ops.ssd.chunked import converter_chunked
from zoo.ops.ssd.reference import converter_scan
from zoo.registry import CONVERTER


@CONVERTER.register("scan")
class ScanConverter(ConverterBackend):
    """Sequential scan over the prefix (reference; any device; Python loop over tokens)."""

    def supports(
        self, *, device: torch.device, dtype: torch.dtype, **shapes: int
    ) -> tuple[bool, str]:
        return check_float_and_groups(dtype, shapes)

    def __call__(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        dt: torch.Tensor,
        A: torch.Tensor,
        *,
        initial_state: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return converter_scan(k, v, dt, A, initial_state=initial_state)


@CONVERTER.register("chunked")
class ChunkedConverter(ConverterBackend):
    """The chunked SSD's chunk-state pass alone (pure PyTorch; compiles fullgraph, dynamic)."""

    Params = ChunkedParams
    conformance_params: ClassVar[list[dict]] = [{"chunk_size": 16}, {}]

    def __init__(self, params: BackendParams | dict | None = None) -> None:
        super().__init__(params)
        self.chunk_size: int = self.params.chunk_size

    def supports(
        self, *, device: torch.device, dtype: torch.dtype, **shapes: int
    ) -> tuple[bool, str]:
        return check_float_and_groups(dtype, shapes)

    def __call__(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        dt: torch.Tensor,
        A: torch.Tensor,
        *,
        initial_state: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return converter_chunked(
            k, v, dt, A, initial_state=initial_state, chunk_size=self.chunk_size
        )
