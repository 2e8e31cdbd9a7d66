"""The TransMamba mixer (../shared/docs/TRANSMAMBA.md, docs/transmamba.md).

One Mamba2 parameter set, two mechanisms. For a sequence of T tokens and this layer's
TransPoint P (0 <= P <= T):
- tokens t < P: grouped causal softmax attention with q = C, k = B, v = x (post-conv);
- tokens t >= P: the SSD recurrence, starting from the Memory Converter's state, i.e. the
  final state of scanning the prefix's (k, v, dt): exactly the state the SSM would have had.
Output: out_proj(concat(attention rows, SSM rows)).

P is a Python int: it selects static slices, so each distinct P is its own compiled graph
(bounded by the schedule; see schedules/). The layer's schedule decides P when the caller
passes none.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from einops import rearrange
from pydantic import Field
from torch import nn

from zoo.backends.base import AttentionBackend, ConverterBackend, SSMBackend
from zoo.layers.mixers.ssd_base import SSDParams, SSDProjections, check_ssd_shapes
from zoo.ops.rope import rotary
from zoo.registry import MIXER


class TransMambaParams(SSDParams):
    attn_scale: float | None = Field(
        None, gt=0, description="softmax scale of the attention path; None = 1/sqrt(d_state)")
    rope: bool = Field(True, description="rotary embedding on q (=C) and k (=B) of the attention path")
    rope_theta: float = Field(1e4, gt=0)
    attn_gate: bool = Field(False, description="z-gate the attention path (paper Table 10: hurts)")
    attn_norm: bool = Field(True, description="RMSNorm (shared weights, no gate) on attention rows")
    attn_d_skip: bool = Field(False, description="add D*x to the attention path's output")


def clamp_transpoint(transpoint: int, seq_len: int) -> int:
    """P > T means the whole sequence is attention; negative P is an error."""
    if transpoint < 0:
        raise ValueError(f"transpoint must be >= 0, got {transpoint}")
    return min(transpoint, seq_len)


@MIXER.register("transmamba")
class TransMambaMixer(nn.Module):
    """TransMamba: attention before the layer's TransPoint, SSM after, shared weights."""

    Params: ClassVar = TransMambaParams
    backend_slots: ClassVar[dict[str, str]] = {"attention": "sdpa", "ssm": "chunked", "converter": "chunked"}
    uses_schedule: ClassVar[bool] = True

    @staticmethod
    def check_spec(d_model: int, params: TransMambaParams) -> list[tuple[str, str]]:
        errors = check_ssd_shapes(d_model, params)
        if not errors and params.rope and params.d_state % 2:
            errors.append(("d_state", f"rope needs an even d_state, got {params.d_state}; or set rope: false"))
        return errors

    @staticmethod
    def backend_shapes(d_model: int, params: TransMambaParams) -> dict[str, dict[str, int]]:
        d_inner = params.expand * d_model
        shapes = {"n_heads": d_inner // params.headdim, "n_groups": params.n_groups,
                  "head_dim": params.headdim, "state_dim": params.d_state}
        return {"attention": shapes, "ssm": shapes, "converter": shapes}

    def __init__(self, d_model: int, params: TransMambaParams, *, backends: dict[str, Any], layer_idx: int = 0) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.params = params
        self.ssd = SSDProjections(d_model, params)
        self.attention: AttentionBackend = backends["attention"]
        self.ssm: SSMBackend = backends["ssm"]
        self.converter: ConverterBackend = backends["converter"]
        self.scale = params.attn_scale if params.attn_scale is not None else 1.0 / math.sqrt(params.d_state)
        self.default_transpoint = None  # set by the model from its schedule: fn(seq_len) -> int

    def attention_rows(self, x, Bm, Cm, z, positions: torch.Tensor, k_all=None, v_all=None):
        """Attention mode for the rows given (q = C, k = B, v = x), then the path's norm.

        x [B,T,H,P]; Bm, Cm [B,T,G,N]; positions [T]. ``k_all``/``v_all`` (already rotated)
        extend the keys with earlier tokens (decode); by default keys are these rows.
        """
        q, k = Cm, Bm
        if self.params.rope:
            q = rotary(q, positions, self.params.rope_theta)
            k = rotary(k, positions, self.params.rope_theta)
        keys = k if k_all is None else k_all
        values = x if v_all is None else v_all
        y = self.attention(q, keys, values, scale=self.scale, causal=True)
        if self.params.attn_d_skip:
            y = y + x * self.ssd.D.to(x.dtype)[:, None]
        y = rearrange(y, "b t h p -> b t (h p)")
        if self.params.attn_norm:
            y = self.ssd.norm(y, z if self.params.attn_gate else None)
        elif self.params.attn_gate:
            y = y * torch.nn.functional.silu(z)
        return y

    def forward(self, hidden_states: torch.Tensor, *, transpoint: int | None = None) -> torch.Tensor:
        """hidden_states [B,T,D] -> [B,T,D]; ``transpoint=None`` lets the layer's schedule decide."""
        seq_len = hidden_states.shape[1]
        if transpoint is None:
            if self.default_transpoint is None:
                raise ValueError(
                    f"transmamba layer {self.layer_idx}: no transpoint given and no schedule bound; "
                    "build the model through zoo.build with a schedule, or pass transpoint=")
            transpoint = self.default_transpoint(seq_len)
        P = clamp_transpoint(transpoint, seq_len)
        ssd = self.ssd
        z, xBC, dt_raw = ssd.project(hidden_states)
        xBC, _ = ssd.conv(xBC)
        x, Bm, Cm = ssd.split(xBC)
        dt = ssd.dt(dt_raw)
        A = ssd.A()
        pieces = []
        if P > 0:
            positions = torch.arange(P, device=hidden_states.device)
            pieces.append(self.attention_rows(x[:, :P], Bm[:, :P], Cm[:, :P], z[:, :P], positions))
        if P < seq_len:
            state = None
            if P > 0:
                state = self.converter(Bm[:, :P], x[:, :P], dt[:, :P], A)
            y = self.ssm(x[:, P:], dt[:, P:], A, Bm[:, P:], Cm[:, P:], D=ssd.D, initial_state=state)
            pieces.append(ssd.finish(y, z[:, P:]))
        y = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        return ssd.out_proj(y)
