"""Grouped causal softmax attention: eager reference, SDPA and FlexAttention paths, and
the masked attention of a decode step over a static cache."""

from zoo.ops.attention.decode import masked_decode_attention
from zoo.ops.attention.flex import flex_grouped_attention
from zoo.ops.attention.reference import causal_mask_lower_right, grouped_attention
from zoo.ops.attention.sdpa import sdpa_grouped_attention

__all__ = [
    "causal_mask_lower_right",
    "flex_grouped_attention",
    "grouped_attention",
    "masked_decode_attention",
    "sdpa_grouped_attention",
]
