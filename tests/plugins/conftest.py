"""Run the plugins' Triton kernels on CPU through Triton's interpreter when there is no GPU.

TRITON_INTERPRET must be set before any ``@triton.jit`` function is defined; the plugins
import their kernels lazily (on first call), so setting it here, at collection, is early
enough. The lead's tests/conftest.py may already set it; ``setdefault`` respects that.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
# mamba-ssm autotunes on a GPU unless deterministic mode pins its configs.
os.environ.setdefault("MAMBA_DETERMINISTIC", "1")
