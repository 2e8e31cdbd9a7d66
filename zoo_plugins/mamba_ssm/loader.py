"""Import mamba-ssm's Triton SSD without running ``mamba_ssm/__init__``.

That ``__init__`` imports the whole package, including CUDA extensions
(``selective_scan_cuda``) that a pure-Python or CPU install lacks. The Triton SSD ops
need none of it, so the package object is created bare (``__path__`` from the import
spec) and only ``mamba_ssm.ops.triton.ssd_combined`` is imported through it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable

PACKAGE = "mamba_ssm"
INSTALL_HINT = (
    "needs mamba-ssm (optional): pip install mamba-ssm==2.3.2.post1 --no-build-isolation; "
    "without a CUDA toolchain use MAMBA_SKIP_CUDA_BUILD=TRUE MAMBA_FORCE_BUILD=TRUE and --no-deps"
)


def installed() -> bool:
    return importlib.util.find_spec(PACKAGE) is not None


def _bare_package() -> None:
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError(INSTALL_HINT)
    package = types.ModuleType(PACKAGE)
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules[PACKAGE] = package


def combined_module() -> types.ModuleType:
    """mamba-ssm's ``ssd_combined`` module (imports Triton on first use)."""
    _bare_package()
    return importlib.import_module(f"{PACKAGE}.ops.triton.ssd_combined")


def chunk_scan_combined() -> Callable:
    """mamba-ssm's ``mamba_chunk_scan_combined``."""
    return combined_module().mamba_chunk_scan_combined
