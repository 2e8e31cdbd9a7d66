"""Sequence mixers, registered in the ``mixer`` registry.

- ``transmamba``: one set of Mamba2 weights serving as attention before the layer's
  TransPoint and as an SSM after it, joined by the Memory Converter.
- ``mamba2``: the SSD mixer (TransMamba at P = 0).
- ``attention``: standard multi-head / GQA attention with RoPE (the Transformer baseline).
"""

from zoo.layers.mixers import attention, mamba2, transmamba  # noqa: F401
