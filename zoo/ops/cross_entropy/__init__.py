"""Cross-entropy of a linear LM head: plain logits (reference) and chunked, without the logits."""

from zoo.ops.cross_entropy.chunked import (
    chunked_linear_cross_entropy,
    chunked_linear_cross_entropy_and_hits,
    default_chunk_size,
)
from zoo.ops.cross_entropy.reference import linear_cross_entropy_and_hits_reference, linear_cross_entropy_reference

__all__ = [
    "chunked_linear_cross_entropy",
    "chunked_linear_cross_entropy_and_hits",
    "default_chunk_size",
    "linear_cross_entropy_and_hits_reference",
    "linear_cross_entropy_reference",
]
