"""The TransMamba mixer (Li et al., arXiv 2503.24067; docs/transmamba.md).

One Mamba2 parameter set, two mechanisms. For a sequence of T tokens and this layer's
TransPoint P (0 <= P <= T):
- tokens t < P: grouped causal softmax attention with q = C, k = B, v = x (post-conv);
- tokens t >= P: the SSD recurrence, starting from the Memory Converter's state, i.e. the
  final state of scanning the prefix's (k, v, dt): exactly the state the SSM would have had.
Output: out_proj(concat(attention rows, SSM rows)).

P is a Python int: it selects static slices, so each distinct P is its own compiled graph
(bounded by the schedule; see schedules/). The model evaluates its schedule and passes
each layer its P (``forward(..., transpoint=)``, ``allocate_cache(..., transpoint=)``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from einops import rearrange
from pydantic import Field
from torch import nn

from zoo.backends.base import AttentionBackend, ConvBackend, ConverterBackend, NormBackend, SSMBackend
from zoo.layers.mixers.ssd_base import SSDParams, SSDProjections, check_ssd_shapes, gate_value, ssd_backend_shapes
from zoo.layers.state import ATTN, MIXED, SSM, LayerCache, static_zeros
from zoo.ops.attention.decode import masked_decode_attention
from zoo.ops.rope import rotary
from zoo.ops.ssd.reference import ssd_step
from zoo.registry import MIXER


class TransMambaParams(SSDParams):
    attn_scale: float | None = Field(
        None, gt=0, le=1e3, description="softmax scale of the attention path; None = 1/sqrt(d_state)"
    )
    rope: bool = Field(True, description="rotary embedding on q (=C) and k (=B) of the attention path")
    rope_theta: float = Field(1e4, gt=1, le=1e9)
    attn_gate: bool = Field(False, description="z-gate the attention path (paper Table 10: hurts)")
    attn_norm: bool = Field(True, description="RMSNorm (shared weights, no gate) on attention rows")
    attn_d_skip: bool = Field(False, description="add D*x to the attention path's output")


@dataclass
class TransMambaCache(LayerCache):
    """Conv state ``conv [B,C,W-1]`` and SSM state ``ssm [B,H,P,N]`` (fp32, fp64 in fp64 models), plus the prefix
    buffer of the tokens before the layer's TransPoint (L = ``transpoint`` slots, G groups,
    R = H // G): ``key [B,G,L,N]`` (= B, stored rotated when RoPE is on), ``value
    [B,G,L,R*P]`` (= x, the group's heads side by side) and ``dt [B,H,L]`` (fp32).

    A row reaching the TransPoint folds the buffer into its SSM state (Memory Converter);
    once every row has, ``release`` drops the buffer (set to None), so it is never read again.
    """

    conv: torch.Tensor
    ssm: torch.Tensor
    transpoint: int
    key: torch.Tensor | None
    value: torch.Tensor | None
    dt: torch.Tensor | None

    @property
    def released(self) -> bool:
        return self.key is None

    def phase(self, lengths: Sequence[int]) -> str:
        if self.released or all(n > self.transpoint for n in lengths):
            return SSM
        if all(n < self.transpoint for n in lengths):
            return ATTN
        return MIXED

    def release(self, lengths: Sequence[int]) -> None:
        if not self.released and all(n > self.transpoint for n in lengths):
            self.key = self.value = self.dt = None


def clamp_transpoint(transpoint: int, seq_len: int) -> int:
    """P > T means the whole sequence is attention; negative P is an error."""
    if transpoint < 0:
        raise ValueError(f"transpoint must be >= 0, got {transpoint}")
    return min(transpoint, seq_len)


@MIXER.register("transmamba")
class TransMambaMixer(nn.Module):
    """TransMamba: attention before the layer's TransPoint, SSM after, shared weights."""

    Params: ClassVar = TransMambaParams
    backend_slots: ClassVar[dict[str, str]] = {
        "attention": "sdpa",
        "ssm": "chunked",
        "converter": "chunked",
        "conv": "torch",
        "norm": "torch",
    }
    uses_schedule: ClassVar[bool] = True

    @staticmethod
    def check_spec(d_model: int, params: TransMambaParams) -> list[tuple[str, str]]:
        errors = check_ssd_shapes(d_model, params)
        if not errors and params.rope and params.d_state % 2:
            errors.append(("d_state", f"rope needs an even d_state, got {params.d_state}; or set rope: false"))
        return errors

    @staticmethod
    def backend_shapes(d_model: int, params: TransMambaParams) -> dict[str, dict[str, int]]:
        shapes = ssd_backend_shapes(d_model, params)
        return {slot: shapes for slot in TransMambaMixer.backend_slots}

    def __init__(self, d_model: int, params: TransMambaParams, *, backends: dict[str, Any], layer_idx: int = 0) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.params = params
        self.ssd = SSDProjections(d_model, params, conv=backends.get("conv"), norm=backends.get("norm"))
        self.conv: ConvBackend = self.ssd.conv_backend
        self.norm: NormBackend = self.ssd.norm.backend
        self.attention: AttentionBackend = backends["attention"]
        self.ssm: SSMBackend = backends["ssm"]
        self.converter: ConverterBackend = backends["converter"]
        # A kernel family that provides both the ssm and the converter may fuse them
        # (``prefix_then_scan``); chosen here, at build time, never per call.
        fused = getattr(self.ssm, "prefix_then_scan", None)
        same_family = getattr(self.ssm, "registry_name", None) == getattr(self.converter, "registry_name", "")
        self.fused_prefix_scan = fused if same_family else None
        self.scale = params.attn_scale if params.attn_scale is not None else 1.0 / math.sqrt(params.d_state)

    def attention_rows(self, x, Bm, Cm, z, positions: torch.Tensor, k_all=None, v_all=None):
        """Attention mode for the rows given (q = C, k = B, v = x), then the path's norm.

        x [B,T,H,P]; Bm, Cm [B,T,G,N]; positions [T]. ``k_all``/``v_all`` (already rotated)
        extend the keys with earlier tokens (decode); by default keys are these rows.
        """
        q = rotary(Cm, positions, self.params.rope_theta) if self.params.rope else Cm
        if k_all is None:
            keys = rotary(Bm, positions, self.params.rope_theta) if self.params.rope else Bm
        else:
            keys = k_all  # the cache holds keys already rotated at their positions
        values = x if v_all is None else v_all
        y = self.attention(q, keys, values, scale=self.scale, causal=True)
        return self._attention_out(y, x, z)

    def _attention_out(self, y, x, z):
        """Attention-path epilogue: optional D skip, then the path's norm / gate. y, x [B,T,H,P]."""
        if self.params.attn_d_skip:
            y = y + x * self.ssd.D.to(x.dtype)[:, None]
        y = rearrange(y, "b t h p -> b t (h p)")
        if self.params.attn_norm:
            y = self.ssd.norm(y, gate_value(z) if self.params.attn_gate else None)
        elif self.params.attn_gate:
            y = y * torch.nn.functional.silu(gate_value(z))
        return y

    def forward(self, hidden_states: torch.Tensor, *, transpoint: int | None = None) -> torch.Tensor:
        """hidden_states [B,T,D] -> [B,T,D] with this layer's TransPoint (the model passes its
        schedule's P; a direct caller passes its own)."""
        seq_len = hidden_states.shape[1]
        if transpoint is None:
            raise ValueError(
                f"transmamba layer {self.layer_idx}: pass transpoint= (0 <= P; P >= T is all "
                "attention); a CausalLM passes its schedule's P"
            )
        P = clamp_transpoint(transpoint, seq_len)
        ssd = self.ssd
        z, x, Bm, Cm, dt, A, _ = ssd.inputs(hidden_states)
        pieces = []
        if P > 0:
            positions = torch.arange(P, device=hidden_states.device)
            pieces.append(self.attention_rows(x[:, :P], Bm[:, :P], Cm[:, :P], z[:, :P], positions))
        if P < seq_len:
            if P > 0 and self.fused_prefix_scan is not None:
                # one op: prefix chunk states -> converter state -> suffix scan, no round trip
                y = self.fused_prefix_scan(x, dt, A, Bm, Cm, transpoint=P, D=ssd.D)
            else:
                state = self.converter(Bm[:, :P], x[:, :P], dt[:, :P], A) if P > 0 else None
                y = self.ssm(x[:, P:], dt[:, P:], A, Bm[:, P:], Cm[:, P:], D=ssd.D, initial_state=state)
            pieces.append(ssd.finish(y, z[:, P:]))
        # With the norm's output recomputed (``norm`` backend ``output: recompute``, the default),
        # each row block goes into out_proj on its own while gradients are on: joined first, the
        # joined copy would be what out_proj's backward keeps. Row-wise, the result is the same
        # up to rounding; without gradients the rows are joined (one matmul).
        if self.norm.recompute_output and len(pieces) > 1 and torch.is_grad_enabled():
            return torch.cat([ssd.out_proj(piece) for piece in pieces], dim=1)
        y = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        return ssd.out_proj(y)

    # Inference state (the protocol of zoo.layers.state): prefix buffer, fold at the TransPoint,
    # SSM afterwards.

    def allocate_cache(
        self,
        batch_size: int,
        max_length: int,
        *,
        dtype: torch.dtype,
        device: torch.device,
        transpoint: int | None = None,
    ) -> TransMambaCache:
        """``transpoint``: this layer's P at ``max_length`` (required; P >= max_length is all attention)."""
        if transpoint is None or transpoint < 0:
            raise ValueError(
                f"transmamba layer {self.layer_idx}: allocate_cache needs transpoint= >= 0, got {transpoint!r}"
            )
        ssd = self.ssd
        conv, ssm = ssd.allocate_states(batch_size, dtype=dtype, device=device)
        slots = min(transpoint, max_length)
        if slots == 0:
            return TransMambaCache(conv, ssm, 0, None, None, None)
        heads_per_group = ssd.n_heads // ssd.n_groups
        return TransMambaCache(
            conv,
            ssm,
            slots,
            static_zeros(batch_size, ssd.n_groups, slots, ssd.d_state, dtype=dtype, device=device),
            static_zeros(batch_size, ssd.n_groups, slots, heads_per_group * ssd.headdim, dtype=dtype, device=device),
            static_zeros(
                batch_size, ssd.n_heads, slots, dtype=torch.promote_types(dtype, torch.float32), device=device
            ),
        )

    def _fold(self, cache: TransMambaCache, A: torch.Tensor) -> torch.Tensor:
        """Memory Converter over the whole prefix buffer -> SSM state [B,H,P,N] (fp32)."""
        keys = rearrange(cache.key, "b g s n -> b s g n")
        if self.params.rope:
            # the buffer holds rotated keys (what attention reads); the converter needs B itself
            positions = torch.arange(keys.shape[1], device=keys.device)
            keys = rotary(keys, -positions, self.params.rope_theta)
        values = rearrange(cache.value, "b g s (r p) -> b s (g r) p", p=self.ssd.headdim)
        dt = rearrange(cache.dt, "b h s -> b s h")
        return self.converter(keys, values, dt, A)

    def prefill(self, hidden_states: torch.Tensor, cache: TransMambaCache, start: int) -> torch.Tensor:
        """Tokens start .. start+T-1 of every row, onto ``cache``. [B,T,D] -> [B,T,D].

        Rows before the layer's TransPoint run attention over the buffer and append to it;
        a chunk reaching the TransPoint folds the buffer into the SSM state first.
        """
        ssd = self.ssd
        seq_len, P = hidden_states.shape[1], cache.transpoint
        z, x, Bm, Cm, dt, A, conv_state = ssd.inputs(hidden_states, cache.conv)
        cache.conv.copy_(conv_state)
        n_attn = max(0, min(P, start + seq_len) - start)
        end = start + n_attn
        pieces = []
        if n_attn:
            positions = torch.arange(start, end, device=hidden_states.device)
            keys = Bm[:, :n_attn]
            if self.params.rope:
                keys = rotary(keys, positions, self.params.rope_theta)
            cache.key[:, :, start:end] = rearrange(keys, "b t g n -> b g t n")
            cache.value[:, :, start:end] = rearrange(x[:, :n_attn], "b t (g r) p -> b g t (r p)", g=ssd.n_groups)
            cache.dt[:, :, start:end] = rearrange(dt[:, :n_attn], "b t h -> b h t")
            k_all = rearrange(cache.key[:, :, :end], "b g s n -> b s g n")
            v_all = rearrange(cache.value[:, :, :end], "b g s (r p) -> b s (g r) p", p=ssd.headdim)
            pieces.append(
                self.attention_rows(
                    x[:, :n_attn], Bm[:, :n_attn], Cm[:, :n_attn], z[:, :n_attn], positions, k_all=k_all, v_all=v_all
                )
            )
        if n_attn < seq_len:
            state = cache.ssm if (P == 0 or start > P) else self._fold(cache, A)
            y, final = self.ssm(
                x[:, n_attn:],
                dt[:, n_attn:],
                A,
                Bm[:, n_attn:],
                Cm[:, n_attn:],
                D=ssd.D,
                initial_state=state,
                return_final_state=True,
            )
            cache.ssm.copy_(final)
            pieces.append(ssd.finish(y, z[:, n_attn:]))
        y = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        return ssd.out_proj(y)

    def step(
        self, hidden_states: torch.Tensor, cache: TransMambaCache, positions: torch.Tensor, phase: str
    ) -> torch.Tensor:
        """One token per row at ``positions`` [B] (long, on device). [B,1,D] -> [B,1,D].

        ``phase`` (host-decided, static per compiled graph): "attn" every row is before the
        TransPoint; "ssm" every row has folded (the buffer is not touched); "mixed" rows
        differ (ragged batches, or the step at the TransPoint): both paths, chosen per row.
        """
        ssd = self.ssd
        P = cache.transpoint
        z, x, Bm, Cm, dt, A, conv_state = ssd.inputs(hidden_states, cache.conv)
        cache.conv.copy_(conv_state)
        y_attn = y_ssm = None
        if phase != SSM:
            q, k = Cm, Bm
            if self.params.rope:
                q = rotary(q, positions[:, None], self.params.rope_theta)
                k = rotary(k, positions[:, None], self.params.rope_theta)
            rows = torch.arange(x.shape[0], device=x.device)
            slot = positions if phase == ATTN else positions.clamp(max=P - 1)
            new_k = k[:, 0]
            new_v = rearrange(x[:, 0], "b (g r) p -> b g (r p)", g=ssd.n_groups)
            new_dt = dt[:, 0]
            if phase == MIXED:
                # rows at or past P must not overwrite the buffer they are folding / have folded
                keep = (positions < P)[:, None, None]
                new_k = torch.where(keep, new_k, cache.key[rows, :, slot])
                new_v = torch.where(keep, new_v, cache.value[rows, :, slot])
                new_dt = torch.where(keep[:, :, 0], new_dt, cache.dt[rows, :, slot])
            cache.key[rows, :, slot] = new_k
            cache.value[rows, :, slot] = new_v
            cache.dt[rows, :, slot] = new_dt
            key_mask = torch.arange(cache.key.shape[2], device=x.device)[None, :] <= positions[:, None]
            y = masked_decode_attention(
                rearrange(q, "b t g n -> b g t n"), cache.key, cache.value, key_mask, scale=self.scale
            )
            y = rearrange(y, "b g t (r p) -> b t (g r) p", p=ssd.headdim)
            y_attn = self._attention_out(y, x, z)
        if phase != ATTN:
            state = cache.ssm
            if phase == MIXED:
                crossing = (positions == P)[:, None, None, None]
                state = torch.where(crossing, self._fold(cache, A), state)
            y, new_state = ssd_step(x[:, 0], dt[:, 0], A, Bm[:, 0], Cm[:, 0], ssd.D, state)
            if phase == MIXED:
                new_state = torch.where((positions >= P)[:, None, None, None], new_state, cache.ssm)
            cache.ssm.copy_(new_state)
            y_ssm = ssd.finish(y[:, None], z)
        if y_attn is None:
            y = y_ssm
        elif y_ssm is None:
            y = y_attn
        else:
            y = torch.where((positions < P)[:, None, None], y_attn, y_ssm)
        return ssd.out_proj(y)
