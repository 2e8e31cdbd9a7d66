"""Prefill and decode over a ``ModelCache``, driving each mixer through its inference-state
protocol (``zoo.layers.state``): the engine never asks which mixer or cache it has.

Ragged batches (prompts of different lengths): ``prefill(..., lengths=)`` takes a
right-padded ``[B,T]`` batch and prefills each row on its own, through a row view of the
batch cache, so padding never enters any state. Decode then runs the whole batch at once
with per-row positions; a TransMamba layer whose rows sit on both sides of its
TransPoint runs its "mixed" phase (both paths, chosen per row).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from zoo.compile import compiled
from zoo.models.cache import ModelCache


@torch.no_grad()
def prefill(
    model,
    cache: ModelCache,
    input_ids: torch.Tensor,
    *,
    lengths: Sequence[int] | None = None,
    chunk_size: int | None = None,
    prefill_fn: Callable | None = None,
) -> torch.Tensor:
    """Feed prompts onto the cache (which may already hold tokens) -> last-token logits [B,V].

    Runs without autograd whatever the caller's grad mode: the cache is updated in place, and
    a cache that recorded gradients would make a compiled step trace a backward it cannot have.

    ``lengths`` (host ints) marks real tokens of a right-padded batch; ``chunk_size`` cuts
    the prompt into chunks (the result equals one prefill). ``prefill_fn`` defaults to
    ``model.prefill`` (pass ``compile_prefill(model)`` for the compiled one).
    """
    prefill_fn = prefill_fn or model.prefill
    batch, seq_len = input_ids.shape
    if batch != cache.batch_size:
        raise ValueError(f"input_ids has {batch} rows, the cache {cache.batch_size}")
    lengths = [seq_len] * batch if lengths is None else [int(n) for n in lengths]
    if len(lengths) != batch or min(lengths) < 0 or max(lengths) > seq_len:
        raise ValueError(f"lengths {lengths} must give 0..{seq_len} for each of {batch} rows")
    step = chunk_size or max(seq_len, 1)
    if len(set(lengths)) == 1 and len(set(cache.lengths)) == 1:
        groups = [(list(range(batch)), slice(None))]
    else:
        groups = [([row], slice(row, row + 1)) for row in range(batch)]
    last = []
    for rows, view in groups:
        layers = cache.layers if view == slice(None) else [layer.select_rows(view) for layer in cache.layers]
        n_real = lengths[rows[0]]
        logits = None
        for begin in range(0, n_real, step):
            end = min(begin + step, n_real)
            logits = prefill_fn(input_ids[view, begin:end], layers, cache.lengths[rows[0]])
            for row in rows:
                cache.lengths[row] += end - begin
        if logits is None:
            raise ValueError("prefill needs at least one token per row")
        last.append(logits[:, -1])
    if any(n > cache.max_length for n in cache.lengths):
        raise ValueError(f"prompt lengths {cache.lengths} exceed the cache's max_length {cache.max_length}")
    cache.release()
    cache.sync_positions()
    return torch.cat(last, dim=0)


StepFn = Callable[[torch.Tensor, list, torch.Tensor, tuple], torch.Tensor]


@torch.no_grad()
def decode(model, cache: ModelCache, tokens: torch.Tensor, step_fn: StepFn | None = None) -> torch.Tensor:
    """One token per row (tokens [B]) -> logits [B,V]. ``step_fn`` defaults to ``model.step``
    (pass ``compile_step(model)`` for the compiled one). No host sync: phases come from
    host-side counts, positions advance on the device. Runs without autograd, like prefill."""
    step_fn = step_fn or model.step
    if max(cache.lengths) >= cache.max_length:
        raise ValueError(f"the cache is full: rows hold {cache.lengths} tokens, max_length {cache.max_length}")
    logits = step_fn(tokens[:, None], cache.layers, cache.positions, cache.phases())
    cache.positions.add_(1)
    cache.advance(1)
    return logits[:, -1]


# Not isolated: generate() compiles the step on every call, and the graphs of earlier calls
# serve the same model again. Each model needs one graph per distinct tuple of layer phases
# (decode) or TransPoint placement (prefill); the limit leaves room for several models.
_INFERENCE_RECOMPILE_LIMIT = 64


def compile_step(model, *, mode: str | None = None, backend: str = "inductor", fullgraph: bool = True) -> StepFn:
    """torch.compile of ``model.step`` with static shapes. One graph per distinct tuple of
    layer phases, so a graph changes only when a layer crosses its TransPoint (at most
    one per distinct TransPoint, plus the "mixed" steps at crossings)."""
    return compiled(
        model.step,
        what="the decode step",
        hint="drop --compile to skip",
        mode=mode,
        backend=backend,
        fullgraph=fullgraph,
        dynamic=False,
        recompile_limit=_INFERENCE_RECOMPILE_LIMIT,
        isolate=False,
    )


def compile_prefill(model, *, backend: str = "inductor", fullgraph: bool = True) -> Callable:
    """torch.compile of ``model.prefill`` with dynamic length and start (one graph serves
    every chunk length; TransPoint placement relative to the chunk adds guards, not steps)."""
    return compiled(
        model.prefill,
        what="the prefill",
        hint="drop --compile to skip",
        backend=backend,
        fullgraph=fullgraph,
        dynamic=True,
        recompile_limit=_INFERENCE_RECOMPILE_LIMIT,
        isolate=False,
    )
