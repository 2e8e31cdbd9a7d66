"""Conformance of ``conv`` backends: shapes, inputs and the check against the reference.

Legend: B batch, T tokens, C channels (the sum of ``split_sizes``), W taps. The reference
is :func:`zoo.ops.conv.reference.causal_conv_silu_split` in fp64 on the same cast values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from zoo.backends.base import ConvBackend
from zoo.ops.conv.reference import causal_conv_silu_split
from zoo.testing.checks import (
    CaseResult,
    _prepare,
    _raise_if_failed,
    compare_grads,
    nan_filled_empty,
    tolerance,
)


@dataclass(frozen=True)
class ConvCase:
    """One shape for a conv check: x [B, T, C] cut into ``split_sizes`` output widths."""

    batch: int
    seq_len: int
    split_sizes: tuple[int, ...]
    width: int = 4
    bias: bool = True

    @property
    def channels(self) -> int:
        return sum(self.split_sizes)

    @property
    def id(self) -> str:
        sizes = "+".join(str(size) for size in self.split_sizes)
        return f"B{self.batch}-T{self.seq_len}-C{sizes}-W{self.width}" + ("" if self.bias else "-nobias")


# Odd lengths, one to three outputs, more channels than one 128-channel tile, more tokens
# than one backward program's 256, one token, an empty sequence, no bias, W = 3.
CONV_CASES: tuple[ConvCase, ...] = (
    ConvCase(2, 37, (8, 4, 4)),
    ConvCase(1, 300, (130, 8, 8)),
    ConvCase(1, 70, (24,), width=3, bias=False),
    ConvCase(2, 21, (10, 6)),
    ConvCase(2, 1, (6, 5, 5)),
    ConvCase(1, 0, (8, 4, 4)),
)
SMALL_CONV_CASES: tuple[ConvCase, ...] = (
    ConvCase(2, 37, (8, 4, 4)),
    ConvCase(1, 20, (24,), width=3, bias=False),
    ConvCase(1, 0, (8, 4, 4)),
)
COMPILE_CONV_CASE = ConvCase(2, 21, (8, 4, 4))


def conv_inputs(case: ConvCase, *, seed: int = 0) -> dict[str, torch.Tensor | None]:
    """fp64 CPU inputs of a conv call: x [B,T,C], weight [C,W], bias [C] (or None)."""
    gen = torch.Generator().manual_seed(seed)
    channels = case.channels
    return {
        "x": torch.randn(case.batch, case.seq_len, channels, generator=gen, dtype=torch.float64),
        "weight": torch.randn(channels, case.width, generator=gen, dtype=torch.float64) / case.width**0.5,
        "bias": torch.randn(channels, generator=gen, dtype=torch.float64) if case.bias else None,
    }


def conv_shape_keys(case: ConvCase) -> dict[str, int]:
    """The ``supports(**shapes)`` keywords of a conv shape."""
    return {"channels": case.channels, "width": case.width, "seq_len": case.seq_len}


def check_conv_backend(
    backend: ConvBackend,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cases: Sequence[ConvCase] | None = None,
    small: bool = False,
    grads: bool = True,
    seed: int = 0,
) -> list[CaseResult]:
    """Check ``backend`` against the fp64 reference: every output part and the gradients
    of x, weight and bias."""
    cases = cases or (SMALL_CONV_CASES if small else CONV_CASES)
    tol = tolerance(dtype)
    results = []
    for case in cases:
        result = CaseResult(case.id, grads_checked=grads)
        mine, ref = _prepare(conv_inputs(case, seed=seed), dtype, device, grads)
        sizes = list(case.split_sizes)
        outs_ref = causal_conv_silu_split(ref["x"], ref["weight"], ref["bias"], split_sizes=sizes)
        with nan_filled_empty():
            outs = backend(mine["x"], mine["weight"], mine["bias"], split_sizes=sizes)
        result.expect(len(outs) == len(sizes), f"{len(outs)} outputs, expected {len(sizes)}")
        for index, (out, out_ref) in enumerate(zip(outs, outs_ref, strict=False)):
            result.expect(out.dtype == dtype, f"out{index} dtype {out.dtype}, expected {dtype}")
            result.compare(f"out{index}", out, out_ref, tol)
        if grads and len(outs) == len(sizes):
            compare_grads(result, outs, outs_ref, mine, ref, tol, seed=seed)
        results.append(result)
    _raise_if_failed(f"conv backend {backend!r} ({dtype}, {device})", results)
    return results
