"""``ssm: mamba_ssm``: mamba-ssm's ``mamba_chunk_scan_combined`` as a zoo backend.

The peer the Triton SSD is measured against. mamba-ssm is an optional dependency; it is
imported on the first call only. Its kernels run inside the custom op
``zoo_mamba_ssm::chunk_scan`` (:mod:`.ops`), so compiled (fullgraph) models take it as one node.
"""

from __future__ import annotations

import importlib.util
from typing import ClassVar

import torch
from pydantic import Field

from zoo.backends.base import BackendParams, SSMBackend, triton_interpreting
from zoo.registry import SSM
from zoo_plugins.mamba_ssm import loader
from zoo_plugins.mamba_ssm.ops import chunk_scan

DTYPES = (torch.float16, torch.bfloat16, torch.float32)


class MambaSSMParams(BackendParams):
    chunk_size: int = Field(256, ge=16, description="mamba-ssm's chunk size (its default is 256)")


@SSM.register("mamba_ssm")
class MambaSSM(SSMBackend):
    """mamba-ssm's Triton SSD (mamba_chunk_scan_combined); CUDA (CPU only in its own tests)."""

    Params = MambaSSMParams
    requires: ClassVar[tuple[str, ...]] = ("mamba_ssm", "triton")
    conformance_small: ClassVar[bool] = True
    conformance_params: ClassVar[list[dict]] = [{"chunk_size": 16}]

    def __init__(self, params: BackendParams | dict | None = None) -> None:
        super().__init__(params)
        self.chunk_size: int = self.params.chunk_size

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        if not loader.installed():
            return False, loader.INSTALL_HINT
        if importlib.util.find_spec("triton") is None:
            return False, "needs the 'triton' package (pip install triton)"
        if triton_interpreting() or torch.cuda.is_available():
            return True, ""
        return False, "needs a CUDA GPU, or TRITON_INTERPRET=1 (set before import) to run on CPU"

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        device = torch.device(device)
        if device.type != "cuda":
            # Its launch code calls torch.cuda helpers, and Triton's CPU interpreter gets
            # 16-bit tl.dot wrong; tests/plugins/test_mamba_ssm.py runs fp32 on CPU with shims.
            return False, f"runs on CUDA, not on {device}"
        if dtype not in DTYPES:
            return False, f"dtype {dtype} is not supported; use fp16, bf16 or fp32"
        if shapes.get("seq_len", 1) < 1:
            return False, "mamba_chunk_scan_combined needs at least one token"
        n_heads, n_groups = shapes.get("n_heads"), shapes.get("n_groups")
        if n_heads and n_groups and n_heads % n_groups:
            return False, f"n_heads ({n_heads}) must be a multiple of n_groups ({n_groups})"
        return True, ""

    def __call__(
        self,
        x: torch.Tensor,
        dt: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        *,
        D: torch.Tensor | None = None,
        initial_state: torch.Tensor | None = None,
        return_final_state: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        y, final_state = chunk_scan(x, dt, A, B, C, D, initial_state, self.chunk_size)
        return (y, final_state) if return_final_state else y
