"""The Mamba2 (SSD) parameter set shared by the ``mamba2`` and ``transmamba`` mixers.

Legend: B batch, T tokens, D d_model, H n_heads, P headdim, G n_groups, N d_state,
d_inner = expand * D = H * P.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from zoo.backends.base import ConvBackend, NormBackend, checkpointed
from zoo.layers.conv import CausalConv1d
from zoo.layers.norm import GatedRMSNorm
from zoo.layers.state import static_zeros


class SSDParams(BaseModel):
    """Mamba2 mixer options (defaults follow mamba_ssm's Mamba2)."""

    # strict: no bool for an int; no inf/NaN float (the bounds keep the init finite in fp32).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
    d_state: int = Field(64, ge=1, le=1024, description="N: state size = the q/k dim of attention mode")
    d_conv: int = Field(4, ge=1, le=16, description="causal depthwise conv width")
    expand: int = Field(2, ge=1, le=8, description="d_inner = expand * d_model")
    headdim: int = Field(64, ge=1, le=1024, description="P: channels per head")
    n_groups: int = Field(1, ge=1, description="G: groups of B/C (q/k) shared by heads")
    dt_min: float = Field(0.001, gt=0, le=10)
    dt_max: float = Field(0.1, gt=0, le=10)
    dt_init_floor: float = Field(1e-4, gt=0, le=10)
    A_init_min: float = Field(1.0, gt=0, le=1e4)
    A_init_max: float = Field(16.0, gt=0, le=1e4)
    conv_bias: bool = True
    bias: bool = False
    norm_eps: float = Field(1e-5, gt=0, lt=1)
    gate: Literal["save", "recompute"] = Field(
        "save",
        description="z, the gated norm's gate, in training: kept from in_proj (save) or formed again from "
        "in_proj's input in the backward (recompute: z's columns of in_proj run as their own matmul)",
    )

    in_proj: Literal["split", "joined"] = Field(
        "split",
        description="in_proj in training: a matmul per part (z, x/B/C, dt) of its weight rows, so each part's "
        "gradient (the conv's dx among them) feeds its own matmuls (split), or one matmul whose three "
        "gradients the backward first joins into one in_proj-wide tensor (joined: 3-4% slower at the 400m "
        "presets); inference always runs one matmul",
    )

    @model_validator(mode="before")
    @classmethod
    def _conv_is_a_slot(cls, data: Any) -> Any:
        if isinstance(data, dict) and "conv_kernel" in data:
            raise ValueError(
                f"conv_kernel is not a mixer param: the conv is a backend slot; write conv: "
                f"{{name: {data['conv_kernel']}}} beside ssm: (or --backend conv={data['conv_kernel']})"
            )
        return data

    @model_validator(mode="after")
    def _ranges(self) -> SSDParams:
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min ({self.dt_min}) must be <= dt_max ({self.dt_max})")
        if self.A_init_min > self.A_init_max:
            raise ValueError(f"A_init_min ({self.A_init_min}) must be <= A_init_max ({self.A_init_max})")
        return self


def ssd_backend_shapes(d_model: int, params: SSDParams) -> dict[str, int]:
    """The ``supports(**shapes)`` keys of an SSD mixer's backends (every slot gets them all)."""
    d_inner = params.expand * d_model
    n_heads = d_inner // params.headdim
    return {
        "n_heads": n_heads,
        "n_groups": params.n_groups,
        "head_dim": params.headdim,
        "state_dim": params.d_state,
        "channels": d_inner + 2 * params.n_groups * params.d_state,
        "d_inner": d_inner,
        "width": params.d_conv,
    }


def check_ssd_shapes(d_model: int, params: SSDParams) -> list[tuple[str, str]]:
    d_inner = params.expand * d_model
    if d_inner % params.headdim:
        return [("headdim", f"expand*d_model = {d_inner} must be divisible by headdim ({params.headdim})")]
    n_heads = d_inner // params.headdim
    if n_heads % params.n_groups:
        return [("n_groups", f"n_heads = {n_heads} must be divisible by n_groups ({params.n_groups})")]
    return []


@dataclass(frozen=True)
class RecomputedGate:
    """z = linear(u, weight, bias) not yet formed: what ``SSDProjections.inputs`` hands out for z
    with ``gate: recompute`` under gradients. ``finish`` forms it inside the gated norm's
    checkpoint, so the backward forms it again from u (which in_proj keeps anyway) and z is
    never among the saved activations. Indexing takes rows (``gate[:, a:b]``), never channels."""

    u: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor | None

    def __getitem__(self, rows: Any) -> RecomputedGate:
        return RecomputedGate(self.u[rows], self.weight, self.bias)

    def value(self) -> torch.Tensor:
        return F.linear(self.u, self.weight, self.bias)


def gate_value(z: torch.Tensor | RecomputedGate | None) -> torch.Tensor | None:
    """z as a tensor (formed here for a ``RecomputedGate``)."""
    return z.value() if isinstance(z, RecomputedGate) else z


def _norm_of_recomputed_gate(
    norm: nn.Module, y: torch.Tensor, u: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    return norm(y, F.linear(u, weight, bias))


class SSDProjections(nn.Module):
    """in_proj -> causal conv + SiLU -> (x, B, C), dt, A, D, gated norm, out_proj."""

    def __init__(
        self, d_model: int, params: SSDParams, conv: ConvBackend | None = None, norm: NormBackend | None = None
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_inner = params.expand * d_model
        self.headdim = params.headdim
        self.n_heads = self.d_inner // params.headdim
        self.n_groups = params.n_groups
        self.d_state = params.d_state
        self.conv_channels = self.d_inner + 2 * self.n_groups * self.d_state
        self.conv_splits = [self.d_inner, self.n_groups * self.d_state, self.n_groups * self.d_state]  # x | B | C
        self.in_proj = nn.Linear(
            d_model, 2 * self.d_inner + 2 * self.n_groups * self.d_state + self.n_heads, bias=params.bias
        )
        self.conv1d = CausalConv1d(self.conv_channels, params.d_conv, bias=params.conv_bias)
        if conv is None:  # the slot's default, for projections built outside the builder
            from zoo.backends.conv import TorchConv

            conv = TorchConv()
        self.conv_backend = conv  # chosen at build time, never per call
        self.dt_bias = nn.Parameter(torch.empty(self.n_heads))
        self.A_log = nn.Parameter(torch.empty(self.n_heads))
        self.D = nn.Parameter(torch.ones(self.n_heads))
        self.norm = GatedRMSNorm(self.d_inner, self.n_groups, eps=params.norm_eps, backend=norm)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=params.bias)
        self.recompute_gate = params.gate == "recompute"  # read once here; forward branches on a bool
        self.split_in_proj = params.in_proj == "split"
        self._init = params
        self.reset_ssm_parameters()

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        p = self._init
        if self.dt_bias.is_meta:
            return
        # dt ~ log-uniform in [dt_min, dt_max]; dt_bias = softplus^-1(dt)
        dt = torch.exp(torch.rand(self.n_heads) * (math.log(p.dt_max) - math.log(p.dt_min)) + math.log(p.dt_min))
        dt = dt.clamp(min=p.dt_init_floor)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        A = torch.empty(self.n_heads).uniform_(p.A_init_min, p.A_init_max)
        self.A_log.copy_(torch.log(A))
        self.D.fill_(1.0)

    def inputs(self, u: torch.Tensor, conv_state: torch.Tensor | None = None):
        """u [B,T,D] -> z, x [B,T,H,P], B, C [B,T,G,N], dt [B,T,H] (softplus-ed, fp32), A [H],
        and the conv state after these tokens ([B,C,W-1]; the input state, or zeros, before)."""
        z, xBC, dt_raw = self.project(u)
        if conv_state is None:  # a whole sequence from a zero history: the conv backend
            parts = self.conv_backend(xBC, self.conv1d.weight[:, 0], self.conv1d.bias, split_sizes=self.conv_splits)
            new_conv_state = self.conv1d.state_after(xBC)
        else:  # decode steps and prefill from a conv state: the state-carrying reference
            parts, new_conv_state = self.conv1d.silu_split(xBC, conv_state, self.conv_splits)
        x, Bm, Cm = self.heads(*parts)
        return z, x, Bm, Cm, self.dt(dt_raw), self.A(), new_conv_state

    def project(self, u: torch.Tensor) -> tuple[torch.Tensor | RecomputedGate, torch.Tensor, torch.Tensor]:
        """u [B,T,D] -> z [B,T,d_inner], xBC (pre-conv) [B,T,conv_channels], dt_raw [B,T,H].

        Under gradients, ``gate: recompute`` makes z a ``RecomputedGate`` (z's rows of in_proj's
        weight become their own matmul) and ``in_proj: split`` runs z, xBC and dt as a matmul
        each; otherwise (and always without gradients) in_proj is one matmul, split after."""
        training = torch.is_grad_enabled()
        recompute, split = self.recompute_gate and training, self.split_in_proj and training
        if not (recompute or split):
            zxbcdt = self.in_proj(u)
            return torch.split(zxbcdt, [self.d_inner, self.conv_channels, self.n_heads], dim=-1)
        weight, bias = self.in_proj.weight, self.in_proj.bias
        n, c = self.d_inner, self.d_inner + self.conv_channels

        def rows(start: int, stop: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
            return weight[start:stop], None if bias is None else bias[start:stop]

        z = RecomputedGate(u, *rows(0, n)) if recompute else F.linear(u, *rows(0, n))
        if split:
            return z, F.linear(u, *rows(n, c)), F.linear(u, *rows(c, None))
        xBC, dt_raw = torch.split(F.linear(u, *rows(n, None)), [self.conv_channels, self.n_heads], dim=-1)
        return z, xBC, dt_raw

    def heads(self, x: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """x [B,T,H*P], B, C [B,T,G*N] -> x [B,T,H,P], B, C [B,T,G,N] (views)."""
        x = rearrange(x, "b t (h p) -> b t h p", p=self.headdim)
        Bm = rearrange(Bm, "b t (g n) -> b t g n", g=self.n_groups)
        Cm = rearrange(Cm, "b t (g n) -> b t g n", g=self.n_groups)
        return x, Bm, Cm

    def dt(self, dt_raw: torch.Tensor) -> torch.Tensor:
        work = torch.promote_types(dt_raw.dtype, torch.float32)  # fp32, or fp64 for an fp64 model
        return F.softplus(dt_raw.to(work) + self.dt_bias.to(work))

    def A(self) -> torch.Tensor:
        return -torch.exp(self.A_log.to(torch.promote_types(self.A_log.dtype, torch.float32)))

    def finish(self, y: torch.Tensor, z: torch.Tensor | RecomputedGate | None) -> torch.Tensor:
        """y [B,T,H,P] -> gated norm -> [B,T,d_inner] (out_proj is applied by the caller). A
        ``RecomputedGate`` is formed under the norm's checkpoint (the backward forms it again)."""
        y = rearrange(y, "b t h p -> b t (h p)")
        if isinstance(z, RecomputedGate):
            return checkpointed(_norm_of_recomputed_gate, self.norm, y, z.u, z.weight, z.bias)
        return self.norm(y, z)

    def allocate_states(
        self, batch_size: int, *, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero conv state [B,C,W-1] (``dtype``) and SSM state [B,H,P,N] (fp32; fp64 in an fp64 model) for a cache."""
        conv = static_zeros(batch_size, self.conv_channels, self.conv1d.width - 1, dtype=dtype, device=device)
        ssm = static_zeros(
            batch_size,
            self.n_heads,
            self.headdim,
            self.d_state,
            dtype=torch.promote_types(dtype, torch.float32),
            device=device,
        )
        return conv, ssm
