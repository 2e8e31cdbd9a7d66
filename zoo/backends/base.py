"""Backend contracts: what an ``attention``, ``ssm`` or ``converter`` backend must do.

Shape legend: B batch, T tokens, H heads, P head dim, G groups (B/C or q/k groups),
N state dim (= the q/k dim of the attention path). Head h reads group h // (H // G).

A backend is a small, parameter-free object built once at model-build time from its
validated ``Params``; the mixer stores it and calls it in forward(). So forward() does
no registry look-ups and no string dispatch, and torch.compile traces straight through.
"""

from __future__ import annotations

import importlib.util
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict


class BackendParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class Backend:
    """Common part of every backend.

    Subclasses set ``requires`` (importable module names) and may override
    ``is_available`` (can it run in this process at all) and ``supports`` (can it run
    these shapes on this device and dtype). Both return ``(ok, reason)``.
    """

    Params: ClassVar[type[BaseModel]] = BackendParams
    requires: ClassVar[tuple[str, ...]] = ()
    registry_name: ClassVar[str] = "?"

    def __init__(self, params: BaseModel | dict[str, Any] | None = None) -> None:
        if params is None:
            params = self.Params()
        elif isinstance(params, dict):
            params = self.Params.model_validate(params)
        self.params = params

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
        raise NotImplementedError


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
        raise NotImplementedError


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
        raise NotImplementedError
