"""Shapes and random inputs for conformance tests.

Shape legend: B batch, T tokens (L for a converter prefix), S keys, H heads, P head dim,
G groups, N state dim (= the q/k dim of attention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SSMCase:
    """One shape for an SSM or converter check (``seq_len`` is the prefix length L for converters)."""

    batch: int
    seq_len: int
    n_heads: int
    head_dim: int
    state_dim: int
    n_groups: int
    initial_state: bool = True
    skip_D: bool = False

    @property
    def id(self) -> str:
        parts = [
            f"B{self.batch}",
            f"T{self.seq_len}",
            f"H{self.n_heads}",
            f"P{self.head_dim}",
            f"N{self.state_dim}",
            f"G{self.n_groups}",
        ]
        parts += ["init"] if self.initial_state else []
        parts += ["noD"] if self.skip_D else []
        return "-".join(parts)


@dataclass(frozen=True)
class AttentionCase:
    """One shape for an attention check: T queries (the last T of S positions when causal)."""

    batch: int
    n_queries: int
    n_keys: int
    n_groups: int
    n_heads: int
    qk_dim: int
    head_dim: int
    causal: bool = True

    @property
    def id(self) -> str:
        mask = "causal" if self.causal else "full"
        return (
            f"B{self.batch}-T{self.n_queries}-S{self.n_keys}-G{self.n_groups}-H{self.n_heads}"
            f"-N{self.qk_dim}-P{self.head_dim}-{mask}"
        )


# Odd lengths, G in {1, 2, H}, lengths crossing 16- and 64-token chunks, a decode step,
# an empty sequence. Small enough that every reference runs in milliseconds.
SSM_CASES: tuple[SSMCase, ...] = (
    SSMCase(2, 63, 4, 16, 8, 2),
    SSMCase(2, 100, 4, 8, 16, 4, initial_state=False, skip_D=True),
    SSMCase(1, 130, 2, 8, 8, 1),
    SSMCase(2, 17, 4, 8, 8, 1, initial_state=False),
    SSMCase(1, 1, 4, 8, 8, 2),
    SSMCase(1, 0, 2, 8, 8, 1),
)
SMALL_SSM_CASES: tuple[SSMCase, ...] = (
    SSMCase(1, 17, 4, 8, 8, 2),
    SSMCase(1, 5, 2, 8, 8, 2, initial_state=False),
    SSMCase(1, 0, 2, 8, 8, 1),
)

ATTENTION_CASES: tuple[AttentionCase, ...] = (
    AttentionCase(2, 17, 17, 2, 4, 16, 8),
    AttentionCase(2, 1, 9, 1, 4, 8, 8),
    AttentionCase(1, 5, 12, 4, 4, 8, 16),
    AttentionCase(2, 9, 9, 2, 4, 8, 8, causal=False),
    AttentionCase(1, 8, 13, 1, 2, 8, 8, causal=False),
)
SMALL_ATTENTION_CASES: tuple[AttentionCase, ...] = (
    AttentionCase(1, 9, 9, 2, 4, 16, 8),
    AttentionCase(1, 3, 11, 1, 2, 16, 16),
)

# One small shape for the torch.compile check (T crosses a 16-token chunk; T < S).
COMPILE_SSM_CASE = SSMCase(2, 21, 4, 8, 8, 2)
COMPILE_ATTENTION_CASE = AttentionCase(2, 5, 9, 2, 4, 8, 8)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ssm_inputs(case: SSMCase, *, seed: int = 0) -> dict[str, torch.Tensor | None]:
    """fp64 CPU inputs of an SSD scan: x, dt (softplus-ed), A (< 0), B, C, D, initial_state."""
    gen = _generator(seed)
    b, t, h, p, n, g = (
        case.batch,
        case.seq_len,
        case.n_heads,
        case.head_dim,
        case.state_dim,
        case.n_groups,
    )

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    return {
        "x": randn(b, t, h, p),
        "dt": F.softplus(randn(b, t, h) - 1.0),
        "A": -torch.exp(torch.rand(h, generator=gen, dtype=torch.float64) * 2.5 - 1.0),
        "B": randn(b, t, g, n) / math.sqrt(n),
        "C": randn(b, t, g, n) / math.sqrt(n),
        "D": None if case.skip_D else randn(h),
        "initial_state": randn(b, h, p, n) if case.initial_state else None,
    }


def attention_inputs(case: AttentionCase, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """fp64 CPU inputs of a grouped attention call: q, k, v."""
    gen = _generator(seed)
    b, g = case.batch, case.n_groups

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    return {
        "q": randn(b, case.n_queries, g, case.qk_dim),
        "k": randn(b, case.n_keys, g, case.qk_dim),
        "v": randn(b, case.n_keys, case.n_heads, case.head_dim),
    }
