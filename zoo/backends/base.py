"""Backend contracts: what an ``attention``, ``ssm``, ``converter``, ``conv`` or ``norm`` backend must do.

Shape legend: B batch, T tokens, H heads, P head dim, G groups (B/C or q/k groups),
N state dim (= the q/k dim of the attention path). Head h reads group h // (H // G).

A backend is a small, parameter-free object built once at model-build time from its
validated ``Params``; the mixer stores it and calls it in forward(). So forward() does
no registry look-ups and no string dispatch, and torch.compile traces straight through.

Each kind's ``__call__`` is defined once, here: it calls the backend's ``op`` (a function
with the kind's signature) with the call's arguments and the backend's ``options``
(keyword arguments fixed at build time, by default its params). A backend that wraps one
function therefore declares ``op`` and, where its params are not the function's keywords,
``build_options``; it writes no ``__call__`` of its own.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
import torch.utils.checkpoint
from pydantic import BaseModel, ConfigDict, Field

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class BackendParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def check_float_and_groups(dtype: torch.dtype, shapes: dict[str, int]) -> tuple[bool, str]:
    """The checks the pure-PyTorch ops share: a float dtype, heads a multiple of groups."""
    if dtype not in FLOAT_DTYPES:
        return False, f"dtype {dtype} is not supported; use one of fp16, bf16, fp32, fp64"
    n_heads, n_groups = shapes.get("n_heads"), shapes.get("n_groups")
    if n_heads and n_groups and n_heads % n_groups:
        return False, f"n_heads ({n_heads}) must be a multiple of n_groups ({n_groups})"
    return True, ""


def triton_interpreting() -> bool:
    """Whether Triton runs on its CPU interpreter (``TRITON_INTERPRET=1``, read when
    ``@triton.jit`` functions are defined; the tests' conftest sets it)."""
    return os.environ.get("TRITON_INTERPRET", "") == "1"


class Backend:
    """Common part of every backend.

    Subclasses set ``requires`` (importable module names) and may override
    ``is_available`` (can it run in this process at all) and ``supports`` (can it run
    these shapes on this device and dtype). Both return ``(ok, reason)``.
    ``recomputable_ops``: the backend's custom ops (``"namespace::name"``) that are cheap
    enough to run again in the backward under the ``selective`` and ``cheap`` activation
    checkpointing policies (``zoo.training.recompute``); a custom op not named there is kept.
    """

    Params: ClassVar[type[BaseModel]] = BackendParams
    requires: ClassVar[tuple[str, ...]] = ()
    recomputable_ops: ClassVar[tuple[str, ...]] = ()
    registry_name: ClassVar[str] = "?"
    op: ClassVar[Callable[..., Any]]  # the function ``__call__`` runs (staticmethod)

    def __init__(self, params: BaseModel | dict[str, Any] | None = None) -> None:
        if params is None:
            params = self.Params()
        elif isinstance(params, dict):
            params = self.Params.model_validate(params)
        self.params = params
        self.options: dict[str, Any] = self.build_options()

    def build_options(self) -> dict[str, Any]:
        """Keyword arguments every call passes to ``op``, fixed at build time (default: the params)."""
        return self.params.model_dump()

    @classmethod
    def is_available(cls) -> tuple[bool, str]:
        for module in cls.requires:
            if importlib.util.find_spec(module) is None:
                return False, f"needs the '{module}' package (pip install {module})"
        return True, ""

    def supports(self, *, device: torch.device, dtype: torch.dtype, **shapes: int) -> tuple[bool, str]:
        return True, ""

    def __repr__(self) -> str:
        extra = self.params.model_dump() if self.params is not None else {}
        args = ", ".join(f"{k}={v!r}" for k, v in extra.items())
        return f"{type(self).__name__}({args})"


class SSMBackend(Backend):
    """Mamba2 / SSD scan.

    ``__call__(x [B,T,H,P], dt [B,T,H], A [H], B [B,T,G,N], C [B,T,G,N], *, D=None [H],
    initial_state=None [B,H,P,N], return_final_state=False) -> y [B,T,H,P]`` or
    ``(y, final_state [B,H,P,N])``. ``dt`` is already softplus-ed (and biased); the state
    is accumulated and returned in fp32; ``y`` has the dtype of ``x``.

    The recurrence: h_t = exp(dt_t*A) h_{t-1} + dt_t x_t B_t^T ; y_t = h_t C_t + D x_t.
    """

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
        return self.op(
            x, dt, A, B, C, D=D, initial_state=initial_state, return_final_state=return_final_state, **self.options
        )


class ConverterBackend(Backend):
    """Memory Converter: the SSM state after reading a prefix, from its K (=B), V (=x), dt.

    ``__call__(k [B,L,G,N], v [B,L,H,P], dt [B,L,H], A [H], *, initial_state=None
    [B,H,P,N]) -> state [B,H,P,N]`` in fp32. ``initial_state`` lets a decode cache fold a
    prefix in pieces; it defaults to zeros.
    """

    def __call__(
        self,
        k: torch.Tensor,
        v: torch.Tensor,
        dt: torch.Tensor,
        A: torch.Tensor,
        *,
        initial_state: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.op(k, v, dt, A, initial_state=initial_state, **self.options)


class AttentionBackend(Backend):
    """Grouped causal softmax attention.

    ``__call__(q [B,T,G,N], k [B,S,G,N], v [B,S,H,P], *, scale: float, causal=True)
    -> [B,T,H,P]``. Head h uses q/k group h // (H // G). With ``causal`` and T < S the
    queries are the last T positions of the S keys (decode / chunked prefill).
    Rotary embeddings are applied by the mixer before the call.
    """

    def __call__(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        scale: float,
        causal: bool = True,
    ) -> torch.Tensor:
        return self.op(q, k, v, scale=scale, causal=causal, **self.options)


def checkpointed(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` under a non-reentrant ``torch.utils.checkpoint`` (the backward
    runs it again; under torch.compile its outputs are not kept). For ops that draw no random
    numbers: the RNG state is not saved."""
    return torch.utils.checkpoint.checkpoint(fn, *args, **kwargs, use_reentrant=False, preserve_rng_state=False)


class OutputRecompute(Backend):
    """A backend whose Params may carry ``output: save | recompute``: with ``recompute`` and
    gradients on, the op runs under ``torch.utils.checkpoint``, so the backward runs it again
    from its inputs and (under torch.compile) its outputs are not kept. Read once at build,
    so a call branches on a bool and compile sees one branch."""

    def __init__(self, params: BaseModel | dict[str, Any] | None = None) -> None:
        super().__init__(params)
        self.recompute_output: bool = getattr(self.params, "output", "save") == "recompute"

    def build_options(self) -> dict[str, Any]:
        options = super().build_options()
        options.pop("output", None)  # how the output is kept is the call's business, not the op's
        return options

    def run_op(self, *args: Any, **kwargs: Any) -> Any:
        """``self.op(*args, **kwargs, **self.options)``, under a checkpoint when recomputing."""
        if self.recompute_output and torch.is_grad_enabled():
            return checkpointed(self.op, *args, **kwargs, **self.options)  # conv and norm draw no random numbers
        return self.op(*args, **kwargs, **self.options)


class ConvParams(BackendParams):
    """What every conv backend accepts (a backend's own Params extend it)."""

    output: Literal["save", "recompute"] = Field(
        "save",
        description="the conv's outputs x, B and C, which the SSD's and the prefix attention's "
        "backward read: 'save' (default) keeps them from the forward; 'recompute' keeps only the "
        "conv's input (a slice of in_proj's output, kept anyway) and runs the conv again in the "
        "backward (torch.utils.checkpoint; under torch.compile the outputs are not saved)",
    )


class ConvBackend(OutputRecompute):
    """The SSD mixers' causal depthwise conv + SiLU over a whole sequence, split into parts.

    ``__call__(x [B,T,C], weight [C,W], bias [C] | None, *, split_sizes: list[int])
    -> list of [B,T,c] tensors``, one per ``split_sizes`` entry (summing to C):
    ``out[t] = silu(bias + sum_k weight[:, k] * x[t - (W-1) + k])`` with x = 0 before t = 0,
    output in the dtype of x. A decode step or a prefill from a conv state does not come
    here: the mixer runs those with its ``CausalConv1d`` (the state-carrying reference).
    """

    Params: ClassVar[type[BaseModel]] = ConvParams

    def __call__(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        *,
        split_sizes: list[int],
    ) -> list[torch.Tensor]:
        return self.run_op(x, weight, bias, split_sizes=split_sizes)


class NormParams(BackendParams):
    """What every norm backend accepts (a backend's own Params extend it)."""

    output: Literal["save", "recompute"] = Field(
        "recompute",
        description="the normed output, which out_proj's backward needs: 'recompute' (default) keeps "
        "only the norm's inputs (y and z, kept anyway) and runs the norm again in the backward "
        "(torch.utils.checkpoint; under torch.compile the output is not saved); 'save' keeps it "
        "from the forward",
    )


class NormBackend(OutputRecompute):
    """The SSD mixers' output norm: gated RMSNorm per group of channels (Mamba2's).

    ``__call__(y [..., D], z [..., D] | None, weight [D], *, n_groups: int, eps: float)
    -> [..., D]`` in the dtype of ``y``: ``rmsnorm(y * silu(z)) * weight`` with the mean
    square taken over each of the ``n_groups`` contiguous groups of D / n_groups channels
    (D a multiple of n_groups); ``z=None`` skips the gate. The math runs in fp32 (fp64 in
    an fp64 model). The mixer's ``GatedRMSNorm`` owns ``weight`` and passes it in, so the
    backend holds no parameters and checkpoints do not depend on it.
    """

    Params: ClassVar[type[BaseModel]] = NormParams

    def __call__(
        self,
        y: torch.Tensor,
        z: torch.Tensor | None,
        weight: torch.Tensor,
        *,
        n_groups: int,
        eps: float,
    ) -> torch.Tensor:
        return self.run_op(y, z, weight, n_groups=n_groups, eps=eps)
