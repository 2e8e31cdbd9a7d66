"""Forward FLOP estimates per layer (2 FLOPs per multiply-add), for ``zoo plan``, and the
model FLOPs of a training token, for MFU in the training-throughput benchmark.

Attention on P tokens costs ~P^2/2 * (qk_dim + v_dim) * 2 per head group (causal half);
the SSD on T-P tokens costs ~ (T-P) * H * P_head * N * 6 (state update, output, chunk
terms, the paper's Eq. 10 scaling O((T-P) N^2), docs/transmamba.md); projections and MLP 2 * params * T.
"""

from __future__ import annotations

from torch import nn


def _linear_params(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


def layer_flops(block: nn.Module, d_model: int, seq_len: int, transpoint: int | None) -> dict[str, float]:
    mixer = block.mixer
    T = seq_len
    proj = 2.0 * _linear_params(block) * T
    attention = ssm = 0.0
    ssd = getattr(mixer, "ssd", None)
    if ssd is not None:
        P = T if transpoint is None and not hasattr(mixer, "converter") else (transpoint or 0)
        if not hasattr(mixer, "converter"):  # plain mamba2
            P = 0
        heads, headdim, groups, state = ssd.n_heads, ssd.headdim, ssd.n_groups, ssd.d_state
        # scores per group (q.k over N) + weighted values per head (over head dim)
        attention = P * P / 2 * 2 * (groups * state + heads * headdim)
        ssm = 6.0 * (T - P) * heads * headdim * state
        if 0 < P:
            ssm += 2.0 * P * heads * headdim * state  # the converter's prefix state
    else:  # standard attention mixer
        heads, head_dim = mixer.n_heads, mixer.head_dim
        attention = T * T / 2 * 2 * 2 * heads * head_dim
    return {"attention": attention, "ssm": ssm, "projections": proj}


def forward_flops(model: nn.Module, seq_len: int, transpoints: list[int] | None = None) -> dict[str, float]:
    """Forward FLOPs of one sequence of ``seq_len`` tokens through a ``CausalLM``, split into
    attention, SSM, and matmuls with weights (every block's projections and MLP, plus the LM
    head; the embedding lookup is free). ``transpoints`` default to the model's schedule."""
    if transpoints is None:
        transpoints = model.transpoints_for(seq_len)
    totals = {"attention": 0.0, "ssm": 0.0, "projections": 0.0}
    for block, transpoint in zip(model.blocks, transpoints, strict=True):
        flops = layer_flops(block, model.spec.d_model, seq_len, transpoint if block.uses_transpoint else None)
        for key in totals:
            totals[key] += flops[key]
    totals["projections"] += 2.0 * model.lm_head.weight.numel() * seq_len
    return totals


def train_flops_per_token(model: nn.Module, seq_len: int, transpoints: list[int] | None = None) -> float:
    """Model FLOPs of one training token at length ``seq_len``: 3x the forward (the backward
    costs two forwards), i.e. 6 N per token for the N weights in matmuls plus 3x the
    attention and SSM terms, which grow with the sequence (causal attention counted as the
    half it computes). Recomputation is not counted: this is the numerator of MFU."""
    return 3.0 * sum(forward_flops(model, seq_len, transpoints).values()) / seq_len
