"""The Mamba2 (SSD) mixer: [B,T,D] -> [B,T,D]. TransMamba with P = 0 equals it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from zoo.backends.base import ConvBackend, NormBackend, SSMBackend
from zoo.layers.mixers.ssd_base import SSDParams, SSDProjections, check_ssd_shapes, ssd_backend_shapes
from zoo.layers.state import SSM, LayerCache
from zoo.ops.ssd.reference import ssd_step
from zoo.registry import MIXER


@dataclass
class SSMCache(LayerCache):
    """Conv state ``conv [B,C,W-1]`` (C conv channels, W conv width) and SSM state
    ``ssm [B,H,P,N]`` (fp32), both updated in place."""

    conv: torch.Tensor
    ssm: torch.Tensor

    def phase(self, lengths) -> str:
        return SSM


class Mamba2Params(SSDParams):
    pass


@MIXER.register("mamba2")
class Mamba2Mixer(nn.Module):
    """Mamba2 SSD mixer (in_proj, causal conv, SSD scan, gated RMSNorm, out_proj)."""

    Params: ClassVar = Mamba2Params
    backend_slots: ClassVar[dict[str, str]] = {"ssm": "chunked", "conv": "torch", "norm": "torch"}
    uses_schedule: ClassVar[bool] = False

    @staticmethod
    def check_spec(d_model: int, params: Mamba2Params) -> list[tuple[str, str]]:
        return check_ssd_shapes(d_model, params)

    @staticmethod
    def backend_shapes(d_model: int, params: Mamba2Params) -> dict[str, dict[str, int]]:
        shapes = ssd_backend_shapes(d_model, params)
        return {slot: shapes for slot in Mamba2Mixer.backend_slots}

    def __init__(self, d_model: int, params: Mamba2Params, *, backends: dict[str, Any], layer_idx: int = 0) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.ssd = SSDProjections(d_model, params, conv=backends.get("conv"), norm=backends.get("norm"))
        self.conv: ConvBackend = self.ssd.conv_backend
        self.norm: NormBackend = self.ssd.norm.backend
        self.ssm: SSMBackend = backends["ssm"]

    def forward(self, hidden_states: torch.Tensor, *, transpoint: int | None = None) -> torch.Tensor:
        ssd = self.ssd
        z, x, Bm, Cm, dt, A, _ = ssd.inputs(hidden_states)
        y = self.ssm(x, dt, A, Bm, Cm, D=ssd.D)
        return ssd.out_proj(ssd.finish(y, z))

    # Inference state (the protocol of zoo.layers.state): conv state + SSM state.

    def allocate_cache(
        self,
        batch_size: int,
        max_length: int,
        *,
        dtype: torch.dtype,
        device: torch.device,
        transpoint: int | None = None,
    ) -> SSMCache:
        return SSMCache(*self.ssd.allocate_states(batch_size, dtype=dtype, device=device))

    def prefill(self, hidden_states: torch.Tensor, cache: SSMCache, start: int) -> torch.Tensor:
        """T tokens of every row onto ``cache``. [B,T,D] -> [B,T,D]."""
        ssd = self.ssd
        z, x, Bm, Cm, dt, A, conv_state = ssd.inputs(hidden_states, cache.conv)
        cache.conv.copy_(conv_state)
        y, final = self.ssm(x, dt, A, Bm, Cm, D=ssd.D, initial_state=cache.ssm, return_final_state=True)
        cache.ssm.copy_(final)
        return ssd.out_proj(ssd.finish(y, z))

    def step(self, hidden_states: torch.Tensor, cache: SSMCache, positions: torch.Tensor, phase: str) -> torch.Tensor:
        """One token per row: [B,1,D] -> [B,1,D] (positions and phase are not needed)."""
        ssd = self.ssd
        z, x, Bm, Cm, dt, A, conv_state = ssd.inputs(hidden_states, cache.conv)
        cache.conv.copy_(conv_state)
        y, state = ssd_step(x[:, 0], dt[:, 0], A, Bm[:, 0], Cm[:, 0], ssd.D, cache.ssm)
        cache.ssm.copy_(state)
        return ssd.out_proj(ssd.finish(y[:, None], z))
