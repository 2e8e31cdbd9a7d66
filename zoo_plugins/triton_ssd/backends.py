"""``ssm: triton``, ``converter: triton``, ``conv: triton`` and ``norm: triton``: the plugin's zoo backends.

The SSD backends' ``supports`` reads the shape keys of :mod:`zoo.backends.ssm` (``n_heads``,
``n_groups``, ``head_dim``, ``state_dim``, ``seq_len``), the conv's and the norm's those of
:mod:`zoo.backends.conv` and :mod:`zoo.backends.norm`.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator

from zoo.backends.base import (
    BackendParams,
    ConvBackend,
    ConverterBackend,
    NormBackend,
    SSMBackend,
    triton_interpreting,
)
from zoo.registry import CONV, CONVERTER, NORM, SSM
from zoo_plugins.triton_ssd.api import DEFAULT_CHUNK_SIZE, converter, ssd, transmamba_ssd
from zoo_plugins.triton_ssd.conv import causal_conv1d
from zoo_plugins.triton_ssd.norm import MAX_GROUP_SIZE, gated_rms_norm
from zoo_plugins.triton_ssd.tuning import Tuning

DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def triton_available() -> tuple[bool, str]:
    if importlib.util.find_spec("triton") is None:
        return False, "needs the 'triton' package (pip install triton)"
    if triton_interpreting() or torch.cuda.is_available():
        return True, ""
    return False, "needs a CUDA GPU, or TRITON_INTERPRET=1 (set before import) to run on CPU"


def triton_device_refusal(device: torch.device | str) -> str:
    """'' when a Triton kernel can run on ``device`` here, else why not."""
    device = torch.device(device)
    if device.type != "cuda" and not (device.type == "cpu" and triton_interpreting()):
        return f"runs on CUDA (or on CPU under TRITON_INTERPRET=1), not on {device}"
    return ""


class _TritonKernels:
    """What every backend of the plugin shares: the triton package, a CUDA device (or the CPU
    under the interpreter) and fp16, bf16 or fp32 inputs. Subclasses add their shape checks."""

    requires: ClassVar[tuple[str, ...]] = ("triton",)
    conformance_small: ClassVar[bool] = True
    dtype_note: ClassVar[str] = ""  # why another dtype is refused, when there is more to say

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        return triton_available()

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        refusal = triton_device_refusal(device)
        if refusal:
            return False, refusal
        if dtype not in DTYPES:
            return False, f"dtype {dtype} is not supported{self.dtype_note}; use fp16, bf16 or fp32"
        return True, ""


class TritonSSDParams(BackendParams):
    chunk_size: int = Field(
        DEFAULT_CHUNK_SIZE,
        ge=16,
        le=256,
        description="tokens per chunk (a power of two); 64 or 128 on an H200",
    )
    states: Literal["save", "recompute"] = Field(
        "recompute",
        description="the per-chunk SSM states the backward needs: 'recompute' (default) rebuilds them "
        "in the backward by one extra state walk; 'save' keeps them from the forward "
        "(B*H*T/chunk_size*P*N values per call, 12 KiB per token and layer at the 400m shape in bf16)",
    )
    tuning: dict[str, int | None] = Field(
        default_factory=dict,
        description="launch knobs (zoo_plugins.triton_ssd.tuning.Tuning), e.g. {chunk_warps: 4}; "
        "unset knobs keep their defaults",
    )

    @field_validator("chunk_size")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"chunk_size must be a power of two, got {value}")
        return value

    @field_validator("tuning")
    @classmethod
    def _known_knobs(cls, value: dict[str, int | None]) -> dict[str, int | None]:
        try:
            Tuning.of(**value)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        return value


class _TritonSSDBackend(_TritonKernels):
    """What the ssm and the converter backends share: head shapes, chunk size and tuning."""

    Params = TritonSSDParams
    conformance_params: ClassVar[list[dict]] = [{"chunk_size": 16}, {"chunk_size": 16, "states": "save"}]
    params: TritonSSDParams

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        ok, why = super().supports(device=device, dtype=dtype, **shapes)
        if not ok:
            return ok, why
        n_heads, n_groups = shapes.get("n_heads"), shapes.get("n_groups")
        if n_heads and n_groups and n_heads % n_groups:
            return False, f"n_heads ({n_heads}) must be a multiple of n_groups ({n_groups})"
        for key in ("head_dim", "state_dim"):
            if shapes.get(key, 0) > 256:
                return False, f"{key} {shapes[key]} > 256 is not supported (one tile per head)"
        return True, ""

    def build_options(self) -> dict[str, Any]:
        return {
            "chunk_size": self.params.chunk_size,
            "tuning": Tuning.of(**self.params.tuning),
            "recompute_states": self.params.states == "recompute",
        }


@SSM.register("triton", preferred_on=("cuda",))
class TritonSSM(_TritonSSDBackend, SSMBackend):
    """Chunked SSD in Triton: fused forward/backward kernels, custom ops (compiles fullgraph).

    Also offers ``prefix_then_scan`` (Memory Converter + suffix scan in one op) for the
    TransMamba mixer.
    """

    op = staticmethod(ssd)

    def prefix_then_scan(
        self,
        x: torch.Tensor,
        dt: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        *,
        transpoint: int,
        D: torch.Tensor | None = None,
        initial_state: torch.Tensor | None = None,
        return_final_state: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Whole-sequence inputs -> suffix outputs y [B, T - transpoint, H, P] (, final_state).

        The converter's state of tokens [0, transpoint) is the suffix scan's initial state.
        """
        return transmamba_ssd(
            x,
            dt,
            A,
            B,
            C,
            transpoint=transpoint,
            D=D,
            initial_state=initial_state,
            return_final_state=return_final_state,
            **self.options,
        )


@CONVERTER.register("triton", preferred_on=("cuda",))
class TritonConverter(_TritonSSDBackend, ConverterBackend):
    """Memory Converter as the Triton SSD's chunk-state + state-passing kernels (no outputs)."""

    op = staticmethod(converter)


@CONV.register("triton", preferred_on=("cuda",))
class TritonConv(_TritonKernels, ConvBackend):
    """Causal conv + SiLU as one Triton kernel each way, x/B/C written contiguous (custom op)."""

    op = staticmethod(causal_conv1d)
    # one read of the conv's input and one write of x/B/C: cheap to redo in the backward
    recomputable_ops: ClassVar[tuple[str, ...]] = ("zoo_triton_ssd::causal_conv1d_fwd",)
    conformance_params: ClassVar[list[dict]] = [{}, {"output": "recompute"}]


# Not preferred on CUDA yet: ``auto`` keeps ``norm: torch`` until this kernel's speed is
# measured against inductor's fused reference in a training step.
@NORM.register("triton")
class TritonNorm(_TritonKernels, NormBackend):
    """Gated, grouped RMSNorm as one Triton kernel each way, fp32 math, rstd saved (custom op)."""

    dtype_note: ClassVar[str] = " (the kernels compute in fp32)"
    op = staticmethod(gated_rms_norm)
    recomputable_ops: ClassVar[tuple[str, ...]] = ("zoo_triton_ssd::gated_rms_norm_fwd",)
    conformance_params: ClassVar[list[dict]] = [{}, {"output": "save"}]

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        ok, why = super().supports(device=device, dtype=dtype, **shapes)
        if not ok:
            return ok, why
        d_inner, n_groups = shapes.get("d_inner"), shapes.get("n_groups")
        if d_inner and n_groups:
            if d_inner % n_groups:
                return False, f"d_inner ({d_inner}) must be a multiple of n_groups ({n_groups})"
            if d_inner // n_groups > MAX_GROUP_SIZE:
                return False, (
                    f"{d_inner // n_groups} channels per norm group (d_inner / n_groups) is more than "
                    f"{MAX_GROUP_SIZE} (one program holds a group)"
                )
        return True, ""
