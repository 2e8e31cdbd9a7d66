"""Mamba2's gated, grouped RMSNorm over [..., D], fused in one Triton kernel each way.

Legend: R rows (every leading dim), D channels, G groups of D / G channels; weight [D].
``out = rmsnorm(y * silu(z)) * weight`` per group (``z = None``: no gate), computed in fp32,
output in the dtype of y: the math of :mod:`zoo.ops.norm` (the pure-PyTorch reference,
``norm: torch``). This is ``norm: triton`` (:class:`zoo_plugins.triton_ssd.backends.TritonNorm`).

Why a kernel: the reference up-casts y and z to fp32 ([B, T, d_inner] each) and inductor
splits the norm's forward and backward into several elementwise and reduction kernels. Here
the forward reads y and z once and writes the output and one fp32 rstd per row and group;
the backward reads y, z and the output's gradient once, recomputes the gate, and writes dy,
dz and per-program partial sums of dweight (summed afterwards).

``gated_rms_norm_fwd`` / ``_bwd`` are ``torch.library`` custom ops (fake kernels and autograd
registered), so compiled models keep ``fullgraph=True``. The kernels need a CUDA tensor, or
Triton's CPU interpreter (``TRITON_INTERPRET=1``); :mod:`.norm_kernels` is imported inside
the op bodies only (see the package docstring).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from zoo_plugins.triton_ssd.plan import cdiv

_LIB = "zoo_triton_ssd"
# Channels per group: one program holds a whole group in registers. On sm_90 the backward
# spills 480 B at 8192 (16 warps) and 2.7 KB at 16384 (benchmarks/kernel_resources.py).
MAX_GROUP_SIZE = 8192
# Rows x BLOCK elements per program and per warp. The backward holds more fp32 tiles at once:
# at 4 warps a 4096-channel group spilled 912 B (benchmarks/kernel_resources.py), at 8 warps 8 B.
_TILE, _PER_WARP = 4096, 1024  # forward
_TILE_BWD, _PER_WARP_BWD = 2048, 512  # backward
_BWD_PROGRAMS = 1024  # backward programs (rows x groups): enough to fill a GPU, few dw partials


def _check(y: Tensor, z: Tensor | None, weight: Tensor, n_groups: int) -> None:
    dim = y.shape[-1]
    if weight.dim() != 1 or weight.shape[0] != dim or (z is not None and z.shape != y.shape):
        z_shape = None if z is None else list(z.shape)
        raise ValueError(
            f"gated_rms_norm: y and z [..., D], weight [D]; got {list(y.shape)}, {z_shape}, {list(weight.shape)}"
        )
    if n_groups < 1 or dim % n_groups:
        raise ValueError(f"gated_rms_norm: n_groups ({n_groups}) must be >= 1 and divide D ({dim})")
    if dim // n_groups > MAX_GROUP_SIZE:
        raise ValueError(
            f"gated_rms_norm: {dim // n_groups} channels per group is more than {MAX_GROUP_SIZE}; "
            "use more groups or the torch norm backend (norm: {name: torch})"
        )


def _rows_view(t: Tensor) -> Tensor:
    """[..., D] -> [R, D] with channel stride 1 (a view when the layout allows: a slice of a
    wider tensor, e.g. z out of the mixer's in_proj, is read in place)."""
    flat = t.reshape(-1, t.shape[-1])
    return flat if flat.stride(-1) == 1 else flat.contiguous()


def _layout(group_size: int, tile: int, per_warp: int) -> tuple[int, int, int]:
    """(BLOCK, ROWS, num_warps) of a launch: a power-of-two group width, rows filling the
    tile, a warp per ``per_warp`` elements of the tile (4 to 16 warps)."""
    block = 1 << (group_size - 1).bit_length()
    rows = max(1, tile // block)
    return block, rows, min(16, max(4, rows * block // per_warp))


def _fwd_impl(y: Tensor, z: Tensor | None, weight: Tensor, n_groups: int, eps: float) -> tuple[Tensor, Tensor]:
    from zoo_plugins.triton_ssd import norm_kernels as kernels

    _check(y, z, weight, n_groups)
    dim = y.shape[-1]
    y2 = _rows_view(y)
    z2 = _rows_view(z) if z is not None else None
    rows = y2.shape[0]
    weight = weight.contiguous()
    out = torch.empty(rows, dim, device=y.device, dtype=y.dtype)
    rstd = torch.empty(rows, n_groups, device=y.device, dtype=torch.float32)
    if rows:
        group_size = dim // n_groups
        block, tile_rows, warps = _layout(group_size, _TILE, _PER_WARP)
        kernels._norm_fwd[(cdiv(rows, tile_rows), n_groups)](
            y2,
            z2 if z2 is not None else y2,
            weight,
            out,
            rstd,
            rows,
            group_size,
            n_groups,
            y2.stride(0),
            z2.stride(0) if z2 is not None else 0,
            out.stride(0),
            eps,
            HAS_Z=z2 is not None,
            ROWS=tile_rows,
            BLOCK=block,
            num_warps=warps,
        )
    return out.view(y.shape), rstd


gated_rms_norm_fwd = torch.library.custom_op(f"{_LIB}::gated_rms_norm_fwd", mutates_args=())(_fwd_impl)


@gated_rms_norm_fwd.register_fake
def _(y, z, weight, n_groups, eps):
    _check(y, z, weight, n_groups)
    rows = math.prod(y.shape[:-1])
    return y.new_empty(y.shape), y.new_empty(rows, n_groups, dtype=torch.float32)


def _bwd_impl(
    dout: Tensor, y: Tensor, z: Tensor | None, weight: Tensor, rstd: Tensor, n_groups: int
) -> tuple[Tensor, Tensor, Tensor]:
    from zoo_plugins.triton_ssd import norm_kernels as kernels

    dim = y.shape[-1]
    y2, dout2 = _rows_view(y), _rows_view(dout)
    z2 = _rows_view(z) if z is not None else None
    rows = y2.shape[0]
    dy = torch.empty(y.shape, device=y.device, dtype=y.dtype)
    dz = torch.empty(z.shape, device=z.device, dtype=z.dtype) if z is not None else y.new_empty(0)
    if not rows:
        return dy, dz, torch.zeros_like(weight)
    group_size = dim // n_groups
    weight = weight.contiguous()
    block, tile_rows, warps = _layout(group_size, _TILE_BWD, _PER_WARP_BWD)
    # row programs per group: about _BWD_PROGRAMS in all, each a whole number of row tiles
    row_programs = max(1, min(cdiv(rows, tile_rows), _BWD_PROGRAMS // n_groups))
    rows_per_program = cdiv(cdiv(rows, row_programs), tile_rows) * tile_rows
    row_programs = cdiv(rows, rows_per_program)
    dw_part = torch.empty(row_programs, dim, device=y.device, dtype=torch.float32)  # every entry is written
    kernels._norm_bwd[(row_programs, n_groups)](
        dout2,
        y2,
        z2 if z2 is not None else y2,
        weight,
        rstd,
        dy,
        dz if z is not None else dy,
        dw_part,
        rows,
        group_size,
        n_groups,
        dim,
        dout2.stride(0),
        y2.stride(0),
        z2.stride(0) if z2 is not None else 0,
        rows_per_program,
        HAS_Z=z2 is not None,
        ROWS=tile_rows,
        BLOCK=block,
        num_warps=warps,
    )
    return dy, dz, dw_part.sum(0).to(weight.dtype)


gated_rms_norm_bwd = torch.library.custom_op(f"{_LIB}::gated_rms_norm_bwd", mutates_args=())(_bwd_impl)


@gated_rms_norm_bwd.register_fake
def _(dout, y, z, weight, rstd, n_groups):
    dz = z.new_empty(z.shape) if z is not None else y.new_empty(0)
    return y.new_empty(y.shape), dz, weight.new_empty(weight.shape)


def _setup_context(ctx, inputs, output) -> None:
    y, z, weight, n_groups, _ = inputs
    ctx.save_for_backward(y, z, weight, output[1])
    ctx.n_groups = n_groups
    ctx.has_z = z is not None
    ctx.set_materialize_grads(False)  # rstd's gradient (never used) arrives as None


def _backward(ctx, dout, _drstd):
    y, z, weight, rstd = ctx.saved_tensors
    if dout is None:
        return None, None, None, None, None
    dy, dz, dw = gated_rms_norm_bwd(dout, y, z, weight, rstd, ctx.n_groups)
    return dy, dz if ctx.has_z else None, dw, None, None


torch.library.register_autograd(f"{_LIB}::gated_rms_norm_fwd", _backward, setup_context=_setup_context)


def gated_rms_norm(y: Tensor, z: Tensor | None, weight: Tensor, *, n_groups: int, eps: float) -> Tensor:
    """y [..., D] (channel stride 1 or not), z [..., D] or None, weight [D] -> rmsnorm(y * silu(z))
    * weight per group of D / n_groups channels, in the dtype of y (fp32 math)."""
    return gated_rms_norm_fwd(y, z, weight, n_groups, eps)[0]


__all__ = ["MAX_GROUP_SIZE", "gated_rms_norm"]
