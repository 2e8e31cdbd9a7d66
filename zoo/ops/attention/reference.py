"""Grouped causal softmax attention, eager: the definition attention backends are tested against.

Shape legend: B batch, T queries, S keys, G q/k groups, N q/k dim, H value heads,
P value head dim, R = H // G value heads per group.

q and k are shared by all heads of a group (TransMamba: q = C, k = B, v = x), so one
softmax per group serves its R value heads. With ``causal`` and T < S the queries are
the *last* T of the S positions (bottom-right aligned mask): query i sits at position
S - T + i and sees keys 0 .. S - T + i. That is what decode and chunked prefill need.
"""

from __future__ import annotations

import torch
from einops import rearrange

from zoo.ops.ssd.reference import compute_dtype


def causal_mask_lower_right(n_queries: int, n_keys: int, device: torch.device) -> torch.Tensor:
    """[T, S] bool, True where query i (at position S - T + i) may attend to key j."""
    query_pos = torch.arange(n_queries, device=device)[:, None] + (n_keys - n_queries)
    return torch.arange(n_keys, device=device)[None, :] <= query_pos


def check_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> None:
    """Raise ValueError on inconsistent shapes (shape checks only: no data is read)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError("grouped attention takes q [B,T,G,N], k [B,S,G,N], v [B,S,H,P]")
    if q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"q {list(q.shape)} and k {list(k.shape)} must agree on B, G and N")
    if k.shape[:2] != v.shape[:2]:
        raise ValueError(f"k {list(k.shape)} and v {list(v.shape)} must agree on B and S")
    if v.shape[2] % k.shape[2]:
        raise ValueError(f"value heads ({v.shape[2]}) must be a multiple of groups ({k.shape[2]})")
    if causal and q.shape[1] > k.shape[1]:
        raise ValueError(
            f"causal attention needs T <= S (queries are the last T keys), got T={q.shape[1]}, S={k.shape[1]}"
        )


def grouped_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    causal: bool = True,
) -> torch.Tensor:
    """q [B,T,G,N], k [B,S,G,N], v [B,S,H,P] -> [B,T,H,P] in v.dtype; fp32 scores and softmax."""
    check_shapes(q, k, v, causal)
    work = compute_dtype(q.dtype)
    scores = torch.einsum("btgn,bsgn->bgts", q.to(work), k.to(work)) * scale
    if causal:
        mask = causal_mask_lower_right(q.shape[1], k.shape[1], q.device)
        scores = scores.masked_fill(~mask, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    values = rearrange(v.to(work), "b s (g r) p -> b g s (r p)", g=k.shape[2])
    out = rearrange(probs @ values, "b g t (r p) -> b t (g r) p", p=v.shape[3])
    return out.to(v.dtype)
