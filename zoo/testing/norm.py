"""Conformance of ``norm`` backends: shapes, inputs and the check against the reference.

Legend: B batch, T tokens, D channels (d_inner), G groups of D / G channels. The reference
is :func:`zoo.ops.norm.reference.gated_rms_norm` in fp64 on the same cast values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from zoo.backends.base import NormBackend
from zoo.ops.norm.reference import gated_rms_norm
from zoo.testing.checks import (
    CaseResult,
    _prepare,
    _raise_if_failed,
    compare_grads,
    nan_filled_empty,
    tolerance,
)

EPS = 1e-5


@dataclass(frozen=True)
class NormCase:
    """One shape for a norm check: y, z [B, T, D] normed in G groups (no z without ``gate``)."""

    batch: int
    seq_len: int
    dim: int
    n_groups: int
    gate: bool = True

    @property
    def id(self) -> str:
        return f"B{self.batch}-T{self.seq_len}-D{self.dim}-G{self.n_groups}" + ("" if self.gate else "-nogate")


# Odd row counts, groups of a non-power-of-two size (masked lanes), one and several groups,
# no gate, one token, an empty sequence.
NORM_CASES: tuple[NormCase, ...] = (
    NormCase(2, 37, 48, 2),
    NormCase(1, 21, 40, 1, gate=False),
    NormCase(3, 5, 96, 4),
    NormCase(1, 1, 24, 1),
    NormCase(1, 0, 16, 2),
)
SMALL_NORM_CASES: tuple[NormCase, ...] = (
    NormCase(2, 37, 48, 2),
    NormCase(1, 7, 40, 1, gate=False),
    NormCase(1, 0, 16, 2),
)
COMPILE_NORM_CASE = NormCase(2, 21, 32, 2)


def norm_inputs(case: NormCase, *, seed: int = 0) -> dict[str, torch.Tensor | None]:
    """fp64 CPU inputs of a norm call: y [B,T,D], z [B,T,D] (or None), weight [D]."""
    gen = torch.Generator().manual_seed(seed)
    shape = (case.batch, case.seq_len, case.dim)
    return {
        "y": torch.randn(*shape, generator=gen, dtype=torch.float64),
        "z": torch.randn(*shape, generator=gen, dtype=torch.float64) if case.gate else None,
        "weight": 1 + 0.2 * torch.randn(case.dim, generator=gen, dtype=torch.float64),
    }


def norm_shape_keys(case: NormCase) -> dict[str, int]:
    """The ``supports(**shapes)`` keywords of a norm shape."""
    return {"d_inner": case.dim, "n_groups": case.n_groups, "seq_len": case.seq_len}


def check_norm_backend(
    backend: NormBackend,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cases: Sequence[NormCase] | None = None,
    small: bool = False,
    grads: bool = True,
    seed: int = 0,
) -> list[CaseResult]:
    """Check ``backend`` against the fp64 reference: the output and the gradients of y, z and weight."""
    cases = cases or (SMALL_NORM_CASES if small else NORM_CASES)
    tol = tolerance(dtype)
    results = []
    for case in cases:
        result = CaseResult(case.id, grads_checked=grads)
        mine, ref = _prepare(norm_inputs(case, seed=seed), dtype, device, grads)
        out_ref = gated_rms_norm(ref["y"], ref["z"], ref["weight"], n_groups=case.n_groups, eps=EPS)
        with nan_filled_empty():
            out = backend(mine["y"], mine["z"], mine["weight"], n_groups=case.n_groups, eps=EPS)
        result.expect(out.dtype == dtype, f"out dtype {out.dtype}, expected {dtype}")
        result.compare("out", out, out_ref, tol)
        if grads:
            compare_grads(result, [out], [out_ref], mine, ref, tol, seed=seed)
        results.append(result)
    _raise_if_failed(f"norm backend {backend!r} ({dtype}, {device})", results)
    return results
