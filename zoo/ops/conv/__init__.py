"""Causal depthwise conv1d (+ SiLU) of the SSD mixers; the pure-PyTorch reference.

Fast paths are ``conv`` backends (:mod:`zoo.backends.conv`; the Triton one lives in the
``zoo_plugins.triton_ssd`` plugin).
"""

from zoo.ops.conv.reference import causal_conv, causal_conv_silu_split, conv_reference

__all__ = ["causal_conv", "causal_conv_silu_split", "conv_reference"]
