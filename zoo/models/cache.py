"""``ModelCache``: every layer's inference state plus the host-side token count of each row.

The layer caches are whatever each mixer allocated (``zoo.layers.state.LayerCache``);
this container only keeps the counts and asks each layer cache, through the protocol,
for its decode phase and to release what no row needs any more. Host-side counts decide
every phase, so no device value is read to choose a code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from zoo.layers.state import LayerCache


@dataclass
class ModelCache:
    """All layers' caches plus the host-side token count of every row."""

    layers: list[LayerCache]
    max_length: int
    lengths: list[int]
    positions: torch.Tensor  # [B] long on the device: next position of each row (mirrors ``lengths``)
    # Per-layer P the layer caches were allocated with, clamped to max_length. By default the
    # model's training TransPoints (CausalLM.default_transpoints): a layer whose P lies past the
    # prompt keeps its prefix buffer through decode and folds it into the SSM state at P.
    transpoints: list[int] = field(default_factory=list)

    @property
    def batch_size(self) -> int:
        return len(self.lengths)

    def nbytes(self) -> int:
        return sum(layer.nbytes() for layer in self.layers)

    def phases(self) -> tuple[str, ...]:
        """Per-layer decode phase for the next token (host-only; static for a compiled step)."""
        return tuple(layer.phase(self.lengths) for layer in self.layers)

    def advance(self, n_tokens: int, rows: list[int] | None = None) -> None:
        """Record that ``rows`` (all by default) consumed ``n_tokens``; release what is no longer needed."""
        for row in range(self.batch_size) if rows is None else rows:
            self.lengths[row] += n_tokens
            if self.lengths[row] > self.max_length:
                raise ValueError(
                    f"row {row}: {self.lengths[row]} tokens exceed the cache's max_length {self.max_length}"
                )
        self.release()

    def release(self) -> None:
        for layer in self.layers:
            layer.release(self.lengths)

    def sync_positions(self) -> None:
        self.positions.copy_(torch.tensor(self.lengths, dtype=torch.long))
