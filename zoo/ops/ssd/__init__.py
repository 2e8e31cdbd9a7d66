"""SSD (Mamba2) scan: sequential reference and chunked pure-PyTorch implementation."""

from zoo.ops.ssd.chunked import converter_chunked, ssd_chunked
from zoo.ops.ssd.reference import converter_scan, ssd_scan

__all__ = ["converter_chunked", "converter_scan", "ssd_chunked", "ssd_scan"]
