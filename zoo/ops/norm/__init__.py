"""The SSD mixers' gated, grouped RMSNorm; the pure-PyTorch reference.

Fast paths are ``norm`` backends (:mod:`zoo.backends.norm`; the Triton one lives in the
``zoo_plugins.triton_ssd`` plugin).
"""

from zoo.ops.norm.reference import gated_rms_norm

__all__ = ["gated_rms_norm"]
