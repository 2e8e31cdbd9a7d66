"""Cross-entropy of a linear head through its full logits: the definition the chunked path is tested against.

Legend: N tokens (batch and time flattened), D hidden size, V vocabulary.

    logits = hidden @ weight.T                                  [N, V], fp32 (fp64 for fp64 inputs)
    loss_i = logsumexp(logits_i) - logits_i[target_i]           0 where target_i == ignore_index

``reduction="sum"`` adds the scored rows; ``"mean"`` divides that sum by the number of scored
rows, and a batch with none scored has loss 0 (not the NaN of ``F.cross_entropy``'s mean), so
a micro-batch with nothing to score adds nothing to a step.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["mean", "sum"]


def check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


def _logits(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """[N, V] in fp32 (fp64 for fp64 inputs)."""
    logits = F.linear(hidden.reshape(-1, hidden.shape[-1]), weight)
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _loss(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int, reduction: Reduction) -> torch.Tensor:
    loss = F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum")
    if reduction == "sum":
        return loss
    return loss / (targets != ignore_index).sum().clamp(min=1)


def linear_cross_entropy_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """hidden [..., D], weight [V, D], targets [...] (long) -> 0-d loss in fp32 (fp64 for fp64 inputs)."""
    check_reduction(reduction)
    return _loss(_logits(hidden, weight), targets.reshape(-1), ignore_index, reduction)


def linear_cross_entropy_and_hits_reference(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss above, hits): hits counts the scored rows whose logits' argmax is the target."""
    check_reduction(reduction)
    with torch.no_grad():
        logits, targets = _logits(hidden, weight), targets.reshape(-1)
        hits = ((targets != ignore_index) & (logits.argmax(-1) == targets)).sum()
        return _loss(logits, targets, ignore_index, reduction), hits
