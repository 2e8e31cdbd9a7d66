"""The inference-state protocol every sequence mixer follows to generate with a cache.

A mixer owns its state: it defines a cache dataclass (a ``LayerCache``), allocates it for
``batch_size x max_length`` and updates it in place in ``prefill`` (any number of tokens)
and ``step`` (one token per row). ``zoo.inference`` drives any mixer through this
protocol alone; it never asks which class a mixer or a cache is.

Host-side decisions stay on the host: the model tracks how many tokens each row has
consumed (host ints) and asks every layer cache for its ``phase`` before a step. The
phase is a hashable host value passed to ``step`` unchanged, so a compiled step has one
graph per tuple of phases (static control flow, no device reads). A mixer with one
decode path returns the same phase every step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Protocol, runtime_checkable

import torch

# Phases of the built-in mixers. ``ATTN``: every row reads a KV / prefix buffer;
# ``SSM``: every row runs the recurrence; ``MIXED``: rows differ (TransMamba only).
ATTN, MIXED, SSM = "attn", "mixed", "ssm"
STEP = "step"  # the default phase of a cache with one decode path


def static_zeros(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Zeros at a fixed address: CUDA graphs (``mode="reduce-overhead"``) replay on them."""
    tensor = torch.zeros(*shape, dtype=dtype, device=device)
    if tensor.is_cuda:
        torch._dynamo.mark_static_address(tensor)
    return tensor


@dataclass
class LayerCache:
    """Base of a mixer's cache. Every tensor field is batch-first ``[B, ...]``; other
    fields are shared by all rows. Subclasses override ``phase`` and ``release`` when
    their decode path depends on how far the rows are."""

    def phase(self, lengths: Sequence[int]) -> str:
        """The decode phase of the next step, from each row's token count (host ints)."""
        return STEP

    def release(self, lengths: Sequence[int]) -> None:
        """Drop state that no row needs any more (called after tokens were consumed)."""

    def select_rows(self, rows: slice) -> LayerCache:
        """The same cache seen through a row slice; views, so writes land in this cache."""
        changes = {
            f.name: value[rows] for f in fields(self) if isinstance(value := getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **changes)

    def nbytes(self) -> int:
        return sum(
            value.numel() * value.element_size()
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), torch.Tensor)
        )


@runtime_checkable
class StatefulMixer(Protocol):
    """What a mixer implements to generate with a cache (shapes: B batch, T tokens, D d_model).

    - ``allocate_cache(batch_size, max_length, *, dtype, device, transpoint=None)``: a new
      ``LayerCache`` (zeros). ``transpoint`` is given to mixers whose class sets
      ``uses_schedule = True`` (the layer's TransPoint at ``max_length``), never to others.
    - ``prefill(hidden_states [B,T,D], cache, start) -> [B,T,D]``: tokens ``start ..
      start+T-1`` of every row, written onto ``cache``; ``start`` is a host int.
    - ``step(hidden_states [B,1,D], cache, positions [B] long, phase) -> [B,1,D]``: one
      token per row at its own position (on the device); ``phase`` is what the cache's
      ``phase`` returned. No host syncs: it is compiled with static shapes.
    """

    def allocate_cache(
        self,
        batch_size: int,
        max_length: int,
        *,
        dtype: torch.dtype,
        device: torch.device,
        transpoint: int | None = None,
    ) -> LayerCache: ...

    def prefill(self, hidden_states: torch.Tensor, cache: LayerCache, start: int) -> torch.Tensor: ...

    def step(
        self, hidden_states: torch.Tensor, cache: LayerCache, positions: torch.Tensor, phase: str
    ) -> torch.Tensor: ...
