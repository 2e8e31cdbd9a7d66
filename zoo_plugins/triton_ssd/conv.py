"""Causal depthwise conv1d (+ SiLU) over [B, T, C], fused in one Triton kernel each way.

Legend: B batch, T tokens, C channels, W taps; weight [C, W], bias [C].
``out[t] = act(bias + sum_k weight[:, k] * x[t - (W-1) + k])`` with x = 0 before t = 0,
the Mamba2 conv of :mod:`zoo.ops.conv` (the pure-PyTorch reference, ``conv: torch``).
This is ``conv: triton`` (:class:`zoo_plugins.triton_ssd.backends.TritonConv`).

Why a kernel: under torch.compile, inductor turned the mixer's conv into separate forward
kernels (pre-activation and activated) and backward kernels that ran at about a third of the
GPU's bandwidth: 0.84 ms of a 3.7 ms transmamba fwd+bwd at T = 8192 on the H200
(docs/benchmarks.md). These kernels read x once per direction, write the
output channels straight into up to three contiguous tensors (x, B and C of the mixer, which
the SSD kernels take as they are), and the backward recomputes the pre-activation instead of
saving it.

``causal_conv1d`` is a ``torch.library`` custom op (fake kernels and autograd registered), so
compiled models keep ``fullgraph=True``. The kernels need a CUDA tensor, or Triton's CPU
interpreter (``TRITON_INTERPRET=1``, which the tests set); :mod:`.conv_kernels` is imported
inside the op bodies only (see the package docstring).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from zoo_plugins.triton_ssd.plan import cdiv

_LIB = "zoo_triton_ssd"
_BT, _BC = 64, 128  # tile: tokens x channels
_FWD_WARPS = 4  # warps per forward program
_BT_BWD = 32  # the backward's dx kernel: it holds more [BT, BC] fp32 tiles at once
# d_pre / dw kernel: [16 tokens, 4 taps, 64 channels] tiles, 32 tiles (512 tokens) per program
_BT_PRE, _BC_PRE, _TILES_PRE = 16, 64, 32
_PRE_WARPS = 4  # warps per d_pre / fused / staged program

# The backward's kernels. "two_pass": d_pre (fp32) and dw/db, then dx from d_pre: measured on
# the H200 (docs/benchmarks.md). "fused": one kernel that recomputes d_pre W - 1 tokens past
# each tile instead of storing it (reads x and the output gradient, writes dx: at the 400m
# shape, B=4, T=8K, 5120 channels, about 1.0 GB per layer against the two-pass kernels' 2.3 GB
# with their fp32 d_pre, at W times the pre-activation arithmetic). `python benchmarks/gpu_micro.py
# --conv-only "16,64,16;fused:16,64,16"` times the two; the op reads this at call time.
# "staged": one kernel that computes d_pre once per token (plus W - 1 tokens past each tile),
# stages it in a small per-program scratch slot and reads dx's shifted rows back from there (about
# 1.0 GB per layer at that shape, and the two-pass kernels' arithmetic). On an H100 it is the
# fastest of the three alone at B=1, T=8K, but a transmamba-400m step at B=4 ran 4.9% slower
# with it (docs/benchmarks.md), so "two_pass" stays.
BACKWARD_KERNELS = ("two_pass", "fused", "staged")
backward_kernels = "two_pass"


def _ends(sizes: Sequence[int]) -> tuple[int, int]:
    """Channel ends of the first two output tensors (S0, S1); absent tensors are empty."""
    s0 = sizes[0]
    s1 = s0 + (sizes[1] if len(sizes) > 1 else 0)
    return s0, s1


def _check(x: Tensor, weight: Tensor, sizes: Sequence[int]) -> None:
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[2]:
        raise ValueError(f"causal_conv1d: x [B, T, C] and weight [C, W], got {list(x.shape)} and {list(weight.shape)}")
    if not 1 <= len(sizes) <= 3 or sum(sizes) != x.shape[2] or min(sizes) < 1:
        raise ValueError(
            f"causal_conv1d: split_sizes {list(sizes)} must be 1-3 positive sizes summing to C={x.shape[2]}"
        )


def _grid(batch: int, seq_len: int, channels: int) -> tuple[int, int, int]:
    return (cdiv(seq_len, _BT), cdiv(channels, _BC), batch)


# The kernels compute element offsets in int32 (int64 offsets doubled their registers and
# spilled: benchmarks/kernel_resources.py). Calls are cut into batch slices that stay below it.
_INT32_LIMIT = 2**31 - 1


def _batch_slices(x: Tensor) -> list[tuple[int, int]]:
    """[start, stop) batch rows per launch, so that no offset inside a launch passes int32."""
    batch, seq_len, channels = x.shape
    per_row = max(x.stride(0), seq_len * max(x.stride(1), channels))  # elements of one row in x / outputs / fp32 d_pre
    if per_row > _INT32_LIMIT:
        raise ValueError(
            f"causal_conv1d: one sequence of {seq_len} tokens x {x.stride(1)} (token stride) is more than 2**31 "
            "elements; split the sequence, or use the torch conv backend (conv: {name: torch})"
        )
    rows = max(1, min(_INT32_LIMIT // per_row, 65535))  # batch is the grid's z axis (at most 65535)
    return [(start, min(start + rows, batch)) for start in range(0, batch, rows)]


def _fwd_impl(x: Tensor, weight: Tensor, bias: Tensor | None, split_sizes: list[int], activation: bool) -> list[Tensor]:
    from zoo_plugins.triton_ssd import conv_kernels as kernels

    _check(x, weight, split_sizes)
    if x.stride(2) != 1:
        x = x.contiguous()
    batch, seq_len, channels = x.shape
    outs = [x.new_empty(batch, seq_len, size) for size in split_sizes]
    if batch == 0 or seq_len == 0:
        return outs
    s0, s1 = _ends(split_sizes)
    weight = weight.contiguous()
    for start, stop in _batch_slices(x):
        slots = [o[start:stop] for o in outs]
        slots += [slots[0]] * (3 - len(slots))  # unused slots: never written (masked off)
        kernels._conv_fwd[_grid(stop - start, seq_len, channels)](
            x[start:stop],
            weight,
            bias if bias is not None else weight,
            *slots,
            seq_len,
            channels,
            s0,
            s1,
            x.stride(0),
            x.stride(1),
            W=weight.shape[1],
            HAS_BIAS=bias is not None,
            ACT=activation,
            BT=_BT,
            BC=_BC,
            num_warps=_FWD_WARPS,
        )
    return outs


causal_conv1d_fwd = torch.library.custom_op(f"{_LIB}::causal_conv1d_fwd", mutates_args=())(_fwd_impl)


@causal_conv1d_fwd.register_fake
def _(x, weight, bias, split_sizes, activation):
    _check(x, weight, split_sizes)
    return [x.new_empty(x.shape[0], x.shape[1], size) for size in split_sizes]


def _bwd_impl(
    grads: list[Tensor | None], x: Tensor, weight: Tensor, bias: Tensor | None, split_sizes: list[int], activation: bool
) -> tuple[Tensor, Tensor, Tensor]:
    from zoo_plugins.triton_ssd import conv_kernels as kernels

    if x.stride(2) != 1:
        x = x.contiguous()
    batch, seq_len, channels = x.shape
    width = weight.shape[1]
    dx = torch.empty(batch, seq_len, channels, device=x.device, dtype=x.dtype)
    n_tb = cdiv(seq_len, _BT_PRE * _TILES_PRE)  # programs along T of the d_pre kernel
    f32 = dict(device=x.device, dtype=torch.float32)
    dw_part = torch.empty(batch * n_tb, width, channels, **f32)  # every entry is written
    db_part = torch.empty(batch * n_tb, channels, **f32)
    if batch and seq_len:
        s0, s1 = _ends(split_sizes)
        grads = [g.contiguous() if g is not None else None for g in grads]
        slots = grads + [None] * (3 - len(grads))
        w = weight.contiguous()
        fused, staged = backward_kernels == "fused", backward_kernels == "staged"
        one_kernel = fused or staged  # dx written by the first kernel, no fp32 d_pre
        # two_pass hands d_pre to the dx kernel in x's dtype (dx's own): bf16 halves those bytes
        # against fp32 at the precision dx is stored in anyway (docs/benchmarks.md)
        d_pre = None if one_kernel else torch.empty_like(x, memory_format=torch.contiguous_format)
        wp = 1 << (width - 1).bit_length()
        slices = _batch_slices(x)
        scratch = dx  # a placeholder the kernel never touches unless staged
        if staged:  # one [BT + WP, BC] fp32 slot per program of the largest launch
            rows = max(stop - start for start, stop in slices)
            scratch = torch.empty(rows * n_tb * cdiv(channels, _BC_PRE), (_BT_PRE + wp) * _BC_PRE, **f32)
        for start, stop in slices:
            kernels._conv_bwd_pre[(n_tb, cdiv(channels, _BC_PRE), stop - start)](
                x[start:stop],
                w,
                bias if bias is not None else weight,
                *[g[start:stop] if g is not None else x for g in slots],
                dx[start:stop] if one_kernel else d_pre[start:stop],
                dw_part[start * n_tb : stop * n_tb],
                db_part[start * n_tb : stop * n_tb],
                scratch,
                seq_len,
                channels,
                s0,
                s1,
                x.stride(0),
                x.stride(1),
                n_tb,
                W=width,
                WP=wp,
                HAS_BIAS=bias is not None,
                ACT=activation,
                HAS_G0=slots[0] is not None,
                HAS_G1=slots[1] is not None,
                HAS_G2=slots[2] is not None,
                BT=_BT_PRE,
                BC=_BC_PRE,
                TILES=_TILES_PRE,
                FUSED=fused,
                STAGED=staged,
                num_warps=_PRE_WARPS,
            )
            if not one_kernel:
                grid = (cdiv(seq_len, _BT_BWD), cdiv(channels, _BC), stop - start)
                kernels._conv_bwd_dx[grid](
                    d_pre[start:stop], w, dx[start:stop], seq_len, channels, W=width, BT=_BT_BWD, BC=_BC
                )
    dw = dw_part.sum(0).t().contiguous().to(weight.dtype)
    db = db_part.sum(0).to(bias.dtype) if bias is not None else db_part.new_zeros(channels)
    return dx, dw, db


causal_conv1d_bwd = torch.library.custom_op(f"{_LIB}::causal_conv1d_bwd", mutates_args=())(_bwd_impl)


@causal_conv1d_bwd.register_fake
def _(grads, x, weight, bias, split_sizes, activation):
    db = bias.new_empty(bias.shape) if bias is not None else x.new_empty(x.shape[2], dtype=torch.float32)
    return x.new_empty(x.shape), weight.new_empty(weight.shape), db


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, split_sizes, activation = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.split_sizes = split_sizes
    ctx.activation = activation
    ctx.has_bias = bias is not None
    ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None


def _backward(ctx, grads):
    x, weight, bias = ctx.saved_tensors
    grads = [g.contiguous() if g is not None else None for g in grads]  # fused into g's producer when compiled
    dx, dw, db = causal_conv1d_bwd(list(grads), x, weight, bias, ctx.split_sizes, ctx.activation)
    return dx, dw, db if ctx.has_bias else None, None, None


torch.library.register_autograd(f"{_LIB}::causal_conv1d_fwd", _backward, setup_context=_setup_context)


def causal_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    activation: bool = True,
    split_sizes: Sequence[int] | None = None,
) -> list[Tensor]:
    """x [B, T, C] (channel stride 1; a slice of a wider tensor is fine), weight [C, W],
    bias [C] -> the conv's output channels as contiguous tensors of ``split_sizes`` widths
    (default: one tensor of C), SiLU applied when ``activation``."""
    sizes = list(split_sizes) if split_sizes is not None else [x.shape[2]]
    return causal_conv1d_fwd(x, weight, bias, sizes, activation)


__all__ = ["causal_conv1d"]
