"""Memory Converter backends of the core: ``scan`` (reference) and ``chunked``.

Both return the SSM state after a prefix, from its k (= B), v (= x) and dt; see
docs/transmamba.md. Shape keys for ``supports`` as in :mod:`zoo.backends.ssm`.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from zoo.backends.base import ConverterBackend, check_float_and_groups
from zoo.backends.ssm import ChunkedParams
from zoo.ops.ssd.chunked import converter_chunked
from zoo.ops.ssd.reference import converter_scan
from zoo.registry import CONVERTER


@CONVERTER.register("scan")
class ScanConverter(ConverterBackend):
    """Sequential scan over the prefix (reference; any device; Python loop over tokens)."""

    op = staticmethod(converter_scan)

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        return check_float_and_groups(dtype, shapes)


@CONVERTER.register("chunked")
class ChunkedConverter(ConverterBackend):
    """The chunked SSD's chunk-state pass alone (pure PyTorch; compiles fullgraph, dynamic)."""

    Params = ChunkedParams
    conformance_params: ClassVar[list[dict]] = [{"chunk_size": 16}, {}]
    op = staticmethod(converter_chunked)

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        return check_float_and_groups(dtype, shapes)
