"""Triton SSD plugin: ``ssm: triton`` and ``converter: triton``, plus the fused TransMamba call.

Importing registers the backends and defines the ``zoo_triton_ssd`` custom ops; it does
not import Triton: the kernels module is imported inside the ops on first call, so that
``TRITON_INTERPRET=1`` set afterwards (by a test's conftest) still takes effect, and so that
a machine without Triton still registers the backends (``is_available()`` says why).
"""

from zoo_plugins.triton_ssd.api import converter, ssd, transmamba_ssd
from zoo_plugins.triton_ssd.backends import TritonConverter, TritonSSM

__all__ = ["TritonConverter", "TritonSSM", "converter", "ssd", "transmamba_ssd"]
