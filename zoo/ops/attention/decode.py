"""Decode-time attention over a static cache.

Legend: B batch, G q/k groups (attention heads for the ``attention`` mixer), S cache
slots, N q/k dim, W value width (R*P for a TransMamba group), H SSM heads, P head dim.

The attention backends take keys of the live length only; a static cache holds
``max_length`` slots of which each row has filled its own number, so a decode step needs
a per-row key mask. That is what ``masked_decode_attention`` adds. (The SSD decode step
is ``zoo.ops.ssd.reference.ssd_step``, the reference recurrence itself.)
"""

from __future__ import annotations

import torch


def masked_decode_attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, key_mask: torch.Tensor, *, scale: float
) -> torch.Tensor:
    """q [B,G,T,N], keys [B,G,S,N], values [B,G,S,W], key_mask [B,S] bool -> [B,G,T,W].

    Scores and softmax in fp32 (fp64 for fp64 inputs); one matmul pair per group reads the cache once (the cache is
    laid out heads-first so no copy of it is made).
    """
    scores = torch.matmul(q, keys.transpose(-1, -2)).to(torch.promote_types(q.dtype, torch.float32)) * scale
    scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores, dim=-1).to(values.dtype)
    return torch.matmul(probs, values)
