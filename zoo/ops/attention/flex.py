"""Grouped causal attention through FlexAttention (``torch.nn.attention.flex_attention``).

Shape legend as in :mod:`zoo.ops.attention.reference`. The causal mask is a block mask
built from a bottom-right aligned ``mask_mod``, so T < S (decode, chunked prefill) needs
no special case. Groups map onto value heads as in :mod:`zoo.ops.attention.sdpa`
(``fold_values``, ``expand`` or ``fold_slices``).

FlexAttention is only fused under torch.compile; called eagerly PyTorch runs an unfused
implementation (and warns). :func:`flex_function` (``compiled=True``) wraps it in
torch.compile, which is inlined when the caller is itself compiled. Limits found in torch 2.13 on CPU: forward
only ("FlexAttention does not support backward on CPU"), and fp32/fp16/bf16 only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from zoo.ops.attention.reference import check_shapes
from zoo.ops.attention.sdpa import Grouping, grouped


def flex_unavailable_reason() -> str:
    """'' when FlexAttention can be imported here, else why not."""
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError as exc:
        return f"torch {torch.__version__} has no torch.nn.attention.flex_attention ({exc})"
    return ""


def flex_function(compiled: bool) -> Callable:
    """flex_attention itself, or wrapped in torch.compile. Resolve it once, at build time."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention) if compiled else flex_attention


def flex_grouped_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    causal: bool = True,
    grouping: Grouping = "auto",
    flex: Callable | None = None,
) -> torch.Tensor:
    """q [B,T,G,N], k [B,S,G,N], v [B,S,H,P] -> [B,T,H,P] via FlexAttention.

    ``flex`` is the function to call (see :func:`flex_function`); default: eager flex_attention.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    check_shapes(q, k, v, causal)
    # compiled flex on CPU (torch 2.13) returned wrong values for a single query row whose
    # inputs had a token stride of 1 (sliced from a channel-major conv output): normalise.
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    n_queries, n_keys = q.shape[1], k.shape[1]
    offset = n_keys - n_queries
    if q.device.type == "cpu":
        # Flex on CPU (torch 2.13) returned wrong rows (NaN at T=8, errors ~1 at T=24) for some
        # lengths that are not multiples of its 128-token block: pad queries and keys to whole
        # blocks. The causal mask keeps its offset, so no real query sees a padded key.
        q, k, v = (_pad_tokens(t, _CPU_BLOCK) for t in (q, k, v))
    block_mask = None
    if causal:

        def bottom_right_causal(batch, head, q_idx, kv_idx):
            return kv_idx <= q_idx + offset

        block_mask = create_block_mask(bottom_right_causal, None, None, q.shape[1], k.shape[1], device=q.device)
    elif k.shape[1] != n_keys:

        def real_keys(batch, head, q_idx, kv_idx):
            return kv_idx < n_keys

        block_mask = create_block_mask(real_keys, None, None, q.shape[1], k.shape[1], device=q.device)
    flex = flex or flex_function(compiled=False)

    def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        # Flex's GQA shares k/v across query heads; here q/k are shared across value heads,
        # so ``grouped`` maps the groups onto the heads before the call.
        return flex(query, key, value, block_mask=block_mask, scale=scale)

    return grouped(attend, q, k, v, grouping)[:, :n_queries]


_CPU_BLOCK = 128


def _pad_tokens(x: torch.Tensor, block: int) -> torch.Tensor:
    """x [B,T,...] with zero tokens appended up to a multiple of ``block``."""
    extra = -x.shape[1] % block
    if extra == 0:
        return x
    return torch.cat([x, x.new_zeros(x.shape[0], extra, *x.shape[2:])], dim=1)
