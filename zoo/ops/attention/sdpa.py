"""Grouped causal attention through ``torch.nn.functional.scaled_dot_product_attention``.

Shape legend as in :mod:`zoo.ops.attention.reference`.

Two ways to map G q/k groups onto H value heads (SDPA's own ``enable_gqa`` is the other
way round: more query heads than key/value heads):

- ``fold_values``: one attention head per group whose value is the group's R heads side
  by side, [B, G, S, R*P]. One score matrix and softmax per group instead of R, but
  only the math kernel takes a value width different from the q/k width.
- ``expand``: q and k copied to the H heads ([B, H, T, N]), so fused kernels can run.
- ``fold_slices``: between the two. A group's values are cut into slices as wide as q/k
  (N / P whole value heads each), one attention head per slice, so the value width equals
  the q/k width that fused kernels need. Each (batch row, group) is one batch entry of the
  call and its q/k are broadcast over its slices with a zero head stride, so q/k are
  copied once (into head-major order), not R times as in ``expand``. It needs N to be a
  multiple of P and R a multiple of N / P; with N == P it is ``expand`` without the copies.

``auto``: ``fold_values`` when R == 1 (the two coincide); on CPU ``fold_values`` unless
N == P, because CPU's fused (flash) kernel needs q/k and value dims equal and without
it ``expand`` is R times the math-kernel work (measured at T = 1024: N=128, P=64, R=16:
224 ms expand vs 21 ms fold; N=P=32, R=4: 9.4 vs 20.8 ms); on CUDA ``fold_slices`` where it applies with
slices wider than a value head, else ``expand``. On an H200 (bf16, 8 groups x 128, 48 x 64
values, causal, B=1, T=8192) ``expand`` beats ``fold_values`` and ``fold_slices`` beats
``expand`` (0.79 vs 1.24 ms forward, 2.99 vs 5.31 ms forward+backward, compiled;
``benchmarks/gpu_micro.py``); at T=2048 they are within 8% of each other. In the transmamba
mixer it takes the prefix attention from 391 to 241 us of kernels (docs/benchmarks.md).
Broadcasting q/k over the slices instead of copying them to every slice keeps 323 instead
of 387 MiB per call at B=4, T=8192 (H200, compiled, fwd+bwd 12.86 vs 12.69 ms).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange

from zoo.ops.attention.reference import causal_mask_lower_right, check_shapes

Grouping = Literal["auto", "expand", "fold_values", "fold_slices"]


def slice_heads(n_groups: int, n_heads: int, qk_dim: int, head_dim: int) -> int:
    """Value heads per slice of ``fold_slices`` (qk_dim / head_dim), or 0 where it cannot apply."""
    if qk_dim % head_dim or (n_heads // n_groups) % (qk_dim // head_dim):
        return 0
    return qk_dim // head_dim


def fold_slices_requirement(n_groups: int, n_heads: int, qk_dim: int, head_dim: int) -> str:
    """The error of a ``fold_slices`` request at shapes where ``slice_heads`` is 0, with the fix."""
    return (
        f"grouping 'fold_slices' needs the q/k dim (state_dim {qk_dim}) to be a multiple of the value "
        f"head_dim ({head_dim}) and the heads per group ({n_heads // n_groups}) a multiple of their "
        "ratio; use grouping='expand' or 'auto'"
    )


def fold_slices(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q [B,T,G,N], k [B,S,G,N], v [B,S,H,P] -> query [B*G, A, T, N], key [B*G, A, S, N] and
    values [B*G, A, S, N] of the ``fold_slices`` layout (A = R*P/N slices per group). Batch
    entry b*G + g holds group g of row b; its query and key are that group's q and k
    broadcast over the A slices (head stride 0, no copy). Value head g*R + a*(N/P) + j is
    slice a of entry b*G + g, channels j*P .. (j+1)*P; the output goes back with
    ``rearrange(out, "(b g) a t (j p) -> b t (g a j) p", g=G, p=P)``."""
    n_groups, n_heads, qk_dim, head_dim = k.shape[2], v.shape[2], q.shape[3], v.shape[3]
    per_slice = slice_heads(n_groups, n_heads, qk_dim, head_dim)
    if not per_slice:
        raise ValueError(fold_slices_requirement(n_groups, n_heads, qk_dim, head_dim))
    slices = n_heads // n_groups // per_slice
    query = rearrange(q, "b t g n -> (b g) t n").unsqueeze(1).expand(-1, slices, -1, -1)
    key = rearrange(k, "b s g n -> (b g) s n").unsqueeze(1).expand(-1, slices, -1, -1)
    return query, key, rearrange(v, "b s (g a j) p -> (b g) a s (j p)", g=n_groups, j=per_slice)


def resolve_grouping(
    grouping: Grouping,
    device: torch.device,
    n_groups: int,
    n_heads: int,
    qk_dim: int | None = None,
    head_dim: int | None = None,
) -> str:
    """The concrete grouping ``auto`` stands for on this device and shape (see above)."""
    if grouping != "auto":
        return grouping
    if n_groups == n_heads:
        return "fold_values"
    if device.type == "cpu":
        return "expand" if qk_dim is not None and qk_dim == head_dim else "fold_values"
    if qk_dim is not None and head_dim is not None and slice_heads(n_groups, n_heads, qk_dim, head_dim) > 1:
        return "fold_slices"
    return "expand"


def _mask_kwargs(n_queries: int, n_keys: int, causal: bool, device: torch.device) -> dict:
    # SDPA's is_causal is top-left aligned: right only when T == S. One query (decode)
    # sees every key. Otherwise an explicit bottom-right mask.
    if not causal or n_queries == 1:
        return {}
    if n_queries == n_keys:
        return {"is_causal": True}
    return {"attn_mask": causal_mask_lower_right(n_queries, n_keys, device)}


def grouped(
    attend: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    grouping: Grouping,
) -> torch.Tensor:
    """q [B,T,G,N], k [B,S,G,N], v [B,S,H,P] -> [B,T,H,P]: the G groups mapped onto the H
    value heads as ``grouping`` says (see above), around one call of ``attend(query [B',A,T,N],
    key [B',A,S,N], value [B',A,S,V]) -> [B',A,T,V]`` (SDPA, FlexAttention, ...) on A heads
    (B' = B, or B*G for ``fold_slices``; its query and key may have a head stride of 0)."""
    n_groups, n_heads, head_dim = k.shape[2], v.shape[2], v.shape[3]
    mode = resolve_grouping(grouping, q.device, n_groups, n_heads, q.shape[3], head_dim)
    if mode == "fold_values":
        values = rearrange(v, "b s (g r) p -> b g s (r p)", g=n_groups)
        out = attend(q.transpose(1, 2), k.transpose(1, 2), values)
        return rearrange(out, "b g t (r p) -> b t (g r) p", p=head_dim)
    if mode == "expand":
        repeats = n_heads // n_groups
        query = rearrange(q, "b t g n -> b g t n").repeat_interleave(repeats, dim=1)
        key = rearrange(k, "b s g n -> b g s n").repeat_interleave(repeats, dim=1)
        return attend(query, key, v.transpose(1, 2)).transpose(1, 2)
    if mode == "fold_slices":
        out = attend(*fold_slices(q, k, v))
        return rearrange(out, "(b g) a t (j p) -> b t (g a j) p", g=n_groups, p=head_dim)
    raise ValueError(f"unknown grouping {grouping!r}; expected 'auto', 'expand', 'fold_values' or 'fold_slices'")


def sdpa_grouped_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    causal: bool = True,
    grouping: Grouping = "auto",
) -> torch.Tensor:
    """q [B,T,G,N], k [B,S,G,N], v [B,S,H,P] -> [B,T,H,P] via SDPA."""
    check_shapes(q, k, v, causal)
    mask = _mask_kwargs(q.shape[1], k.shape[1], causal, q.device)

    def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(query, key, value, scale=scale, **mask)

    return grouped(attend, q, k, v, grouping)
