"""Sanity check of the MQAR task and the trainer: a plain ``torch.nn.TransformerEncoder``
(2 layers, d_model 64, 4 heads, learned absolute positions, no zoo layers) on the same task.

    .venv/bin/python docs/experiments/mqar-cpu/reference_transformer.py
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.data import make_task
from zoo.training import TrainConfig, Trainer


class ReferenceTransformer(nn.Module):
    def __init__(self, vocab_size: int = 32, d_model: int = 64, n_layers: int = 2, seq_len: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.positions = nn.Parameter(torch.randn(seq_len, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, 4, 4 * d_model, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, vocab_size)
        self.register_buffer("mask", torch.triu(torch.full((seq_len, seq_len), float("-inf")), 1))

    def forward(self, input_ids: torch.Tensor, *, transpoints: list[int] | None = None) -> torch.Tensor:
        T = input_ids.shape[1]
        hidden = self.embed(input_ids) + self.positions[:T]
        return self.head(self.encoder(hidden, mask=self.mask[:T, :T]))


def main() -> None:
    task = make_task("mqar", seq_len=32, vocab_size=32, num_items=4)
    torch.manual_seed(0)
    model = ReferenceTransformer()
    print(f"{sum(p.numel() for p in model.parameters()):,} params")
    config = TrainConfig(
        steps=1000, batch_size=64, lr=5e-3, warmup_steps=50, eval_every=200, compile=False, progress=False, device="cpu"
    )
    result = Trainer(model, task, config).fit()
    print([(h["step"], round(h["eval_accuracy"], 3)) for h in result.history if "eval_accuracy" in h])


if __name__ == "__main__":
    main()
