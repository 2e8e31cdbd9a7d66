"""Triton plugin: ``ssm: triton``, ``converter: triton``, ``conv: triton``, ``norm: triton``, and the
fused TransMamba call.

Files, one job each: ``tuning`` (launch knobs, a frozen value), ``plan`` (how a call is cut
and launched), ``launch`` (the SSD's forward and backward launch sequences), ``ops`` (custom
ops, autograd, the eager fast path), ``kernels`` / ``kernels_bwd`` (the SSD's Triton
kernels), ``conv`` / ``conv_kernels`` (the causal conv's op and kernels), ``norm`` /
``norm_kernels`` (the gated RMSNorm's op and kernels), ``api`` (the
functions), ``backends`` (the registered backends).

Importing registers the backends and defines the ``zoo_triton_ssd`` custom ops; it does
not import Triton: the kernels modules are imported inside the ops on first call, so that
``TRITON_INTERPRET=1`` set afterwards (by a test's conftest) still takes effect, and so that
a machine without Triton still registers the backends (``is_available()`` says why).
"""

from zoo_plugins.triton_ssd.api import converter, ssd, transmamba_ssd
from zoo_plugins.triton_ssd.backends import TritonConv, TritonConverter, TritonNorm, TritonSSM
from zoo_plugins.triton_ssd.tuning import Tuning

__all__ = ["TritonConv", "TritonConverter", "TritonNorm", "TritonSSM", "Tuning", "converter", "ssd", "transmamba_ssd"]
