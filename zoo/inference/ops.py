"""Decode-time math over a static cache: masked attention and one SSD recurrence step.

Legend: B batch, G q/k groups (attention heads for the ``attention`` mixer), S cache
slots, N q/k dim, W value width (R*P for a TransMamba group), H SSM heads, P head dim.

The attention backends (``zoo.backends.base``) take keys of the live length only; a
static cache holds ``max_length`` slots of which each row has filled its own number, so
decode needs a per-row key mask. That is the one thing these two functions add.
"""

from __future__ import annotations

import torch
from einops import repeat


def masked_decode_attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, key_mask: torch.Tensor, *, scale: float
) -> torch.Tensor:
    """q [B,G,T,N], keys [B,G,S,N], values [B,G,S,W], key_mask [B,S] bool -> [B,G,T,W].

    fp32 scores and softmax; one matmul pair per group reads the cache once (the cache is
    laid out heads-first so no copy of it is made).
    """
    scores = torch.matmul(q, keys.transpose(-1, -2)).float() * scale
    scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(values.dtype)
    return torch.matmul(probs, values)


def ssd_step(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
    D: torch.Tensor | None, state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token of h = exp(dt*A) h + dt x B^T; y = h C + D x.

    x [B,H,P], dt [B,H] (softplus-ed), A [H], B/C [B,G,N], state [B,H,P,N] fp32
    -> (y [B,H,P] in x.dtype, new state [B,H,P,N] fp32).
    """
    n_heads = x.shape[1]
    work = state.dtype
    B_h = repeat(B.to(work), "b g n -> b (g r) n", r=n_heads // B.shape[1])
    C_h = repeat(C.to(work), "b g n -> b (g r) n", r=n_heads // C.shape[1])
    x_w, dt_w = x.to(work), dt.to(work)
    decay = torch.exp(dt_w * A.to(work))
    state = state * decay[..., None, None] + (dt_w[..., None] * x_w)[..., None] * B_h[:, :, None, :]
    y = torch.einsum("bhpn,bhn->bhp", state, C_h)
    if D is not None:
        y = y + D.to(work)[:, None] * x_w
    return y.to(x.dtype), state
