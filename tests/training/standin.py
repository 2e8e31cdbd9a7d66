"""A tiny causal LM with the CausalLM forward signature, for trainer tests that need no zoo model."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class StandinSchedule:
    def __init__(self, is_random: bool = False) -> None:
        self.is_random = is_random
        self.calls: list[tuple[int, int, int | None]] = []

    def transpoints(self, n_layers: int, seq_len: int, *, step: int | None = None) -> list[int]:
        self.calls.append((n_layers, seq_len, step))
        choices = (0, seq_len // 2, seq_len)
        return [choices[((step or 0) + layer) % 3] for layer in range(n_layers)]


class StandinLM(nn.Module):
    """Embedding -> n causal depthwise-conv + MLP blocks -> tied head."""

    def __init__(
        self,
        vocab_size: int = 64,
        d_model: int = 32,
        n_layers: int = 2,
        random_schedule: bool = False,
    ):
        super().__init__()
        self.spec = {
            "name": "standin",
            "vocab_size": vocab_size,
            "d_model": d_model,
            "n_layers": n_layers,
        }
        self.n_layers = n_layers
        self.schedule = StandinSchedule(random_schedule)
        self.embed = nn.Embedding(vocab_size, d_model)
        self.convs = nn.ModuleList(nn.Conv1d(d_model, d_model, 4, groups=d_model) for _ in range(n_layers))
        self.mlps = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(d_model),
                nn.Linear(d_model, 2 * d_model),
                nn.GELU(),
                nn.Linear(2 * d_model, d_model),
            )
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.embed.weight
        self.seen_transpoints: list[Sequence[int] | None] = []

    def forward(self, input_ids: torch.Tensor, *, transpoints: Sequence[int] | None = None) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            self.seen_transpoints.append(transpoints)
        h = self.embed(input_ids)
        for conv, mlp in zip(self.convs, self.mlps, strict=True):
            x = nn.functional.pad(h.transpose(1, 2), (3, 0))
            h = h + conv(x).transpose(1, 2)
            h = h + mlp(h)
        return self.head(self.norm(h))
