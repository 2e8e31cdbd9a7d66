"""Triton kernels of the gated, grouped RMSNorm (see :mod:`zoo_plugins.triton_ssd.norm`).

Imported lazily, inside the op bodies, so that ``TRITON_INTERPRET=1`` set by the tests'
conftest takes effect before any ``@triton.jit``.

Legend: R rows, D channels, G groups of GS = D / G channels; BLOCK = GS rounded up to a power
of two (lanes past GS are masked). ``x = y * silu(z)`` (or y), ``rstd = 1 / sqrt(mean(x^2) + eps)``
per row and group, ``out = x * rstd * w``. A program owns one group of a tile of ROWS rows,
so small groups (the SSD mixers' D / G is a few hundred) still give each program thousands
of elements. Everything is computed in fp32; row offsets are int64 (R x row stride can pass
2**31 at long sequences).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _gate(y_ptr, z_ptr, rows, ch, mask, stride_y, stride_z, HAS_Z: tl.constexpr):
    """y, z (fp32, z = 0 without a gate) and x = y * silu(z) at rows [ROWS] x channels [BLOCK]."""
    y = tl.load(y_ptr + rows[:, None] * stride_y + ch[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_Z:
        z = tl.load(z_ptr + rows[:, None] * stride_z + ch[None, :], mask=mask, other=0.0).to(tl.float32)
        x = y * z * tl.sigmoid(z)
    else:
        z = y * 0.0
        x = y
    return y, z, x


@triton.jit
def _norm_fwd(
    y_ptr,
    z_ptr,
    w_ptr,
    out_ptr,
    rstd_ptr,
    R,
    GS,
    G,
    stride_y,
    stride_z,
    stride_out,
    eps,
    HAS_Z: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """out [R, D] (the dtype of out_ptr) and rstd [R, G] (fp32, for the backward)."""
    rows = (tl.program_id(0) * ROWS + tl.arange(0, ROWS)).to(tl.int64)
    group = tl.program_id(1)
    cols = tl.arange(0, BLOCK)
    ch = group * GS + cols
    rmask, cmask = rows < R, cols < GS
    mask = rmask[:, None] & cmask[None, :]
    _, _, x = _gate(y_ptr, z_ptr, rows, ch, mask, stride_y, stride_z, HAS_Z)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / GS + eps)
    w = tl.load(w_ptr + ch, mask=cmask, other=0.0).to(tl.float32)
    out = x * rstd[:, None] * w[None, :]
    tl.store(out_ptr + rows[:, None] * stride_out + ch[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(rstd_ptr + rows * G + group, rstd, mask=rmask)


@triton.jit
def _norm_bwd(
    dout_ptr,
    y_ptr,
    z_ptr,
    w_ptr,
    rstd_ptr,
    dy_ptr,
    dz_ptr,
    dw_part_ptr,
    R,
    GS,
    G,
    D,
    stride_dout,
    stride_y,
    stride_z,
    rows_per_program,
    HAS_Z: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """dy, dz [R, D] (contiguous) over ``rows_per_program`` rows (a multiple of ROWS) of one
    group, and this program's partial dw [GS] (row ``program_id(0)`` of dw_part [programs, D]).

    With xhat = x * rstd and g = dout * w: dx = rstd * (g - xhat * mean(g * xhat)) per group,
    dy = dx * silu(z), dz = dx * y * silu'(z), dw = sum over rows of dout * xhat. x is
    recomputed from y and z instead of being saved.
    """
    group = tl.program_id(1)
    cols = tl.arange(0, BLOCK)
    ch = group * GS + cols
    cmask = cols < GS
    w = tl.load(w_ptr + ch, mask=cmask, other=0.0).to(tl.float32)
    dw = tl.zeros([ROWS, BLOCK], dtype=tl.float32)  # reduced over rows once, at the end
    start = tl.program_id(0).to(tl.int64) * rows_per_program
    for offset in range(0, rows_per_program, ROWS):
        rows = start + offset + tl.arange(0, ROWS)
        rmask = rows < R
        mask = rmask[:, None] & cmask[None, :]
        y, z, x = _gate(y_ptr, z_ptr, rows, ch, mask, stride_y, stride_z, HAS_Z)
        rstd = tl.load(rstd_ptr + rows * G + group, mask=rmask, other=0.0)
        xhat = x * rstd[:, None]
        dout = tl.load(dout_ptr + rows[:, None] * stride_dout + ch[None, :], mask=mask, other=0.0).to(tl.float32)
        dw += dout * xhat
        g = dout * w[None, :]
        dx = (g - xhat * (tl.sum(g * xhat, axis=1) / GS)[:, None]) * rstd[:, None]
        if HAS_Z:
            sig = tl.sigmoid(z)
            dy = dx * z * sig
            dz = dx * y * sig * (1.0 + z * (1.0 - sig))
            tl.store(dz_ptr + rows[:, None] * D + ch[None, :], dz.to(dz_ptr.dtype.element_ty), mask=mask)
        else:
            dy = dx
        tl.store(dy_ptr + rows[:, None] * D + ch[None, :], dy.to(dy_ptr.dtype.element_ty), mask=mask)
    tl.store(dw_part_ptr + tl.program_id(0) * D + ch, tl.sum(dw, axis=0), mask=cmask)
