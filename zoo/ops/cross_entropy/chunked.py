"""Cross-entropy of a linear head without its logits: head, loss and gradients, chunk by chunk.

Legend: N tokens (batch and time flattened), D hidden size, V vocabulary, C tokens per chunk.

The plain path materialises the logits [N, V] (at N = 32768, V = 32000: 2 GiB in bf16, 4 GiB
as fp32) and their gradient of the same size, and reads and writes them several times per
step. Here the forward walks the tokens C at a time; for each chunk it computes the logits
[C, V] (a matmul in the compute dtype, then fp32), their logsumexp and the loss, and at once
the gradient of the loss with respect to the logits, ``(softmax - onehot) * scale`` with zero
rows for ignored tokens, which it turns into that chunk's rows of d hidden [C, D] and adds to
d weight [V, D] (accumulated in fp32). Only those two gradients are kept for backward, which
scales them by the incoming gradient: the loss is a scalar, so its gradient is linear in it.
The cost: the forward does the work of the backward even when the loss is not differentiated
(a call without grad takes a forward-only loop instead), and d weight in fp32 [V, D] is held
from forward to backward.

Compute dtype: the autocast dtype when autocast is on for the inputs' device (the matmuls run
in it, as ``nn.Linear`` under autocast would), else the inputs' common dtype. Logits, softmax
and loss are fp32 (fp64 for fp64 inputs).

Reductions as in :mod:`zoo.ops.cross_entropy.reference`: ``sum``, or ``mean`` over the scored
tokens with 0 for a batch that scores none. The number of scored tokens stays a device tensor
(no host sync), and the chunk count follows from the shapes alone, so the loop unrolls under
``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import torch

from zoo.ops.cross_entropy.reference import Reduction, check_reduction

# fp32 logits of one chunk at most: 256 MiB. A chunk holds at most about three [C, V] buffers
# at once (the logits, turned into the gradient in place; logsumexp's temporary; a bf16 matmul
# output or copy), so the loss adds under ~1 GiB to a step whatever N is, while C stays in the
# thousands for vocabularies up to ~64K (2048 tokens at V = 32000): matmuls of that height keep
# a GPU busy, and N / C chunks (16 at N = 32768) keep the unrolled graph and the launches few.
DEFAULT_CHUNK_BYTES = 256 * 2**20


def default_chunk_size(vocab_size: int, n_tokens: int, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Tokens per chunk: the largest power of two whose fp32 logits [C, V] fit ``max_chunk_bytes``
    (at least 1), and no more than ``n_tokens``."""
    fits = max(1, max_chunk_bytes // (4 * vocab_size))
    return max(1, min(1 << (fits.bit_length() - 1), n_tokens))


def _compute_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    device_type = hidden.device.type
    common = torch.promote_types(hidden.dtype, weight.dtype)
    if common != torch.float64 and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return common


def _chunks(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int,
    reduction: Reduction,
    chunk_size: int,
    compute_dtype: torch.dtype,
    with_grads: bool,
    with_hits: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(loss, d loss / d hidden [N, D] in hidden's dtype, d loss / d weight [V, D] in weight's,
    hits: the scored rows whose largest logit is the target's, a 0-d long count)."""
    accumulate = torch.promote_types(compute_dtype, torch.float32)
    scored = targets != ignore_index
    # mean: every row's gradient is divided by the global count, known before the first chunk
    scale = 1.0 / scored.sum().clamp(min=1).to(accumulate) if reduction == "mean" else None
    head = weight.to(compute_dtype)
    loss = torch.zeros((), dtype=accumulate, device=hidden.device)
    grad_rows: list[torch.Tensor] = []
    grad_weight = torch.zeros(weight.shape, dtype=accumulate, device=weight.device) if with_grads else None
    hits = torch.zeros((), dtype=torch.long, device=hidden.device) if with_hits else None
    for start in range(0, hidden.shape[0], chunk_size):
        rows = hidden[start : start + chunk_size].to(compute_dtype)
        chunk_scored = scored[start : start + chunk_size]
        chunk_targets = torch.where(chunk_scored, targets[start : start + chunk_size], 0)
        logits = (rows @ head.T).to(accumulate)  # [C, V]
        logsumexp = torch.logsumexp(logits, dim=-1)
        picked = logits.gather(1, chunk_targets[:, None]).squeeze(1)
        loss = loss + torch.where(chunk_scored, logsumexp - picked, 0).sum()
        if with_hits:  # argmax's first maximum, as over the full logits
            hits = hits + (chunk_scored & (logits.argmax(-1) == chunk_targets)).sum()
        if not with_grads:
            continue
        row_weight = chunk_scored.to(accumulate)
        if scale is not None:
            row_weight = row_weight * scale
        # (softmax - onehot) * row weight, in place over the logits: eager holds one [C, V]
        # fp32 buffer per chunk (and its compute-dtype copy where that differs), not three
        grad_logits = logits.sub_(logsumexp[:, None]).exp_()
        grad_logits.scatter_add_(1, chunk_targets[:, None], torch.full_like(picked, -1.0)[:, None])
        grad_logits = grad_logits.mul_(row_weight[:, None]).to(compute_dtype)
        grad_rows.append((grad_logits @ head).to(hidden.dtype))
        grad_weight.add_(grad_logits.T @ rows)
        del logits, grad_logits  # before the next chunk's logits exist, not after
    if scale is not None:
        loss = loss * scale
    if not with_grads:
        return loss, None, None, hits
    grad_hidden = torch.cat(grad_rows) if grad_rows else torch.zeros_like(hidden)  # N = 0: no chunk
    return loss, grad_hidden, grad_weight.to(weight.dtype), hits


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        ignore_index: int,
        reduction: Reduction,
        chunk_size: int,
        compute_dtype: torch.dtype,
    ) -> torch.Tensor:
        loss, grad_hidden, grad_weight, _ = _chunks(
            hidden, weight, targets, ignore_index, reduction, chunk_size, compute_dtype, with_grads=True
        )
        ctx.save_for_backward(grad_hidden, grad_weight)
        return loss

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        return (
            grad_hidden * grad_loss.to(grad_hidden.dtype),
            grad_weight * grad_loss.to(grad_weight.dtype),
            None,
            None,
            None,
            None,
            None,
        )


def chunked_linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """hidden [..., D], weight [V, D], targets [...] (long) -> 0-d loss, fp32 (fp64 for fp64 inputs).

    Equal to :func:`linear_cross_entropy_reference` without forming the logits [N, V];
    ``chunk_size`` tokens per chunk (default :func:`default_chunk_size`). A tied head (weight
    shared with the embedding) gets its gradient summed with the embedding's by autograd.
    """
    hidden, targets, chunk_size, compute_dtype = _prepare(hidden, weight, targets, reduction, chunk_size)
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        return _ChunkedLinearCrossEntropy.apply(
            hidden, weight, targets, ignore_index, reduction, chunk_size, compute_dtype
        )
    loss, _, _, _ = _chunks(
        hidden, weight, targets, ignore_index, reduction, chunk_size, compute_dtype, with_grads=False
    )
    return loss


def chunked_linear_cross_entropy_and_hits(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For evaluation: (the loss of :func:`chunked_linear_cross_entropy`, hits), no gradients.

    hits: how many scored rows have the target as their largest logit (the first of equal
    maxima, as ``argmax`` over the full logits), a 0-d long tensor on the inputs' device. An
    accuracy over a recall task's few scored positions costs one [C, V] chunk of logits at a
    time instead of the [N, V] logits.
    """
    hidden, targets, chunk_size, compute_dtype = _prepare(hidden, weight, targets, reduction, chunk_size)
    with torch.no_grad():
        loss, _, _, hits = _chunks(
            hidden,
            weight,
            targets,
            ignore_index,
            reduction,
            chunk_size,
            compute_dtype,
            with_grads=False,
            with_hits=True,
        )
    return loss, hits


def _prepare(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, reduction: str, chunk_size: int | None
) -> tuple[torch.Tensor, torch.Tensor, int, torch.dtype]:
    """Checked arguments: hidden [N, D], targets [N], the chunk size and the compute dtype."""
    check_reduction(reduction)
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(f"targets {list(targets.shape)} must match hidden {list(hidden.shape)} without its last dim")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    chunk_size = chunk_size or default_chunk_size(weight.shape[0], hidden.shape[0])
    return hidden, targets, chunk_size, _compute_dtype(hidden, weight)
