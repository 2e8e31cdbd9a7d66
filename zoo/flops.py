"""Forward FLOP estimates per layer (2 FLOPs per multiply-add), for ``zoo plan``.

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
