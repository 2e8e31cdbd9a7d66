"""The Triton SSD as ``torch.library`` custom ops, so compiled models keep ``fullgraph=True``.

Shape legend as in :mod:`zoo_plugins.triton_ssd.kernels`. Two ops:

- ``zoo_triton_ssd::ssd_fwd(x, dt, A, B, C, D?, initial_state?, out_start, chunk_size,
  save_states) -> (y [B, T - out_start, H, P], final_state [B,H,P,N] fp32,
  states [B,H,nc,P,N] fp32 (empty unless save_states), totals [B,H,nc] fp32)``.
  ``out_start`` is the first token whose output is computed: 0 for a plain scan, the
  TransPoint for the fused converter + suffix scan, T for the converter alone.
- ``zoo_triton_ssd::ssd_bwd(...)`` -> gradients of x, dt, A, B, C, D, initial_state.

The autograd formula registered on ``ssd_fwd`` calls ``ssd_bwd``. The kernels module is
imported inside the op bodies only (see the package docstring for why).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

_LIB = "zoo_triton_ssd"


def _next_pow2(value: int, floor: int = 16) -> int:
    return max(floor, 1 << (max(value, 1) - 1).bit_length())


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs get exact fp32 products (tf32 would miss fp32 tolerances).
    return "ieee" if dtype == torch.float32 else "tf32"


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


def _cdiv(a: int, b: int) -> int:
    """ceil(a / b); works on SymInts too (the fake kernels use it for dynamic T)."""
    return (a + b - 1) // b


def _num_warps(chunk_size: int) -> int:
    return 8 if chunk_size >= 128 else 4


# State pass: elements of a [P*N] state per program, chunks per serial step.
_PASS_BLOCK = 128
_PASS_CHUNKS = 8


@torch.library.custom_op(f"{_LIB}::ssd_fwd", mutates_args=())
def ssd_fwd(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    initial_state: Tensor | None,
    out_start: int,
    chunk_size: int,
    save_states: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from zoo_plugins.triton_ssd import kernels

    x, dt, A, B, C = (v.contiguous() for v in (x, dt, A, B, C))
    batch, seq_len, n_heads, head_dim = x.shape
    n_groups, state_dim = B.shape[2], B.shape[3]
    heads_per_group = n_heads // n_groups
    n_chunks = _cdiv(seq_len, chunk_size)
    f32 = dict(device=x.device, dtype=torch.float32)
    y = torch.empty(batch, seq_len - out_start, n_heads, head_dim, device=x.device, dtype=x.dtype)
    final_state = torch.empty(batch, n_heads, head_dim, state_dim, **f32)
    states = torch.empty(batch, n_heads, n_chunks, head_dim, state_dim, **f32)
    totals = torch.empty(batch, n_heads, n_chunks, **f32)
    block_p, block_n = _next_pow2(head_dim), _next_pow2(state_dim)
    prec = _dot_precision(x.dtype)
    warps = _num_warps(chunk_size)
    if n_chunks > 0:
        kernels._chunk_state_fwd[(n_chunks, batch * n_groups)](
            x,
            dt,
            A,
            B,
            states,
            totals,
            seq_len,
            n_heads,
            n_groups,
            heads_per_group,
            head_dim,
            state_dim,
            n_chunks,
            Q=chunk_size,
            BP=block_p,
            BN=block_n,
            PREC=prec,
            DOT_F32=_interpreting(),
            num_warps=warps,
        )
    state_numel = head_dim * state_dim
    init = initial_state.contiguous() if initial_state is not None else final_state
    kernels._state_pass[(batch * n_heads, _cdiv(state_numel, _PASS_BLOCK))](
        states,
        totals,
        init,
        final_state,
        state_numel,
        n_chunks,
        HAS_START=initial_state is not None,
        HAS_OWN=True,
        REVERSE=False,
        BLOCK=_PASS_BLOCK,
        CB=_PASS_CHUNKS,
        num_warps=4,
    )
    first_chunk = out_start // chunk_size
    if seq_len > out_start:
        kernels._chunk_out_fwd[(n_chunks - first_chunk, batch * n_groups)](
            x,
            dt,
            A,
            B,
            C,
            D if D is not None else A,
            states,
            y,
            seq_len,
            n_heads,
            n_groups,
            heads_per_group,
            head_dim,
            state_dim,
            n_chunks,
            out_start,
            first_chunk,
            HAS_D=D is not None,
            Q=chunk_size,
            BP=block_p,
            BN=block_n,
            PREC=prec,
            DOT_F32=_interpreting(),
            num_warps=warps,
        )
    if not save_states:
        states = states.new_empty(0)
    return y, final_state, states, totals


@ssd_fwd.register_fake
def _ssd_fwd_fake(x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states):
    batch, seq_len, n_heads, head_dim = x.shape
    state_dim = B.shape[3]
    n_chunks = _cdiv(seq_len, chunk_size)
    y = x.new_empty(batch, seq_len - out_start, n_heads, head_dim)
    final_state = x.new_empty(batch, n_heads, head_dim, state_dim, dtype=torch.float32)
    if save_states:
        states = x.new_empty(batch, n_heads, n_chunks, head_dim, state_dim, dtype=torch.float32)
    else:
        states = x.new_empty(0, dtype=torch.float32)
    totals = x.new_empty(batch, n_heads, n_chunks, dtype=torch.float32)
    return y, final_state, states, totals


@torch.library.custom_op(f"{_LIB}::ssd_bwd", mutates_args=())
def ssd_bwd(
    dy: Tensor | None,
    dfinal_state: Tensor | None,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    states: Tensor,
    totals: Tensor,
    out_start: int,
    chunk_size: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    from zoo_plugins.triton_ssd import kernels, kernels_bwd

    x, dt, A, B, C = (v.contiguous() for v in (x, dt, A, B, C))
    batch, seq_len, n_heads, head_dim = x.shape
    n_groups, state_dim = B.shape[2], B.shape[3]
    heads_per_group = n_heads // n_groups
    n_chunks = _cdiv(seq_len, chunk_size)
    f32 = dict(device=x.device, dtype=torch.float32)
    has_dy = dy is not None and seq_len > out_start
    dx = torch.empty_like(x)
    ddt = torch.empty_like(dt)
    dB = torch.empty_like(B)
    dC = torch.empty_like(C) if has_dy else torch.zeros_like(C)
    d_init = torch.empty(batch, n_heads, head_dim, state_dim, **f32)
    dstates = torch.empty(batch, n_heads, n_chunks, head_dim, state_dim, **f32)
    dA_part = torch.empty(batch, n_chunks, n_heads, **f32)
    dD_part = torch.empty(batch, n_chunks, n_heads, **f32)
    block_p, block_n = _next_pow2(head_dim), _next_pow2(state_dim)
    prec = _dot_precision(x.dtype)
    warps = _num_warps(chunk_size)
    if has_dy:
        dy = dy.contiguous()
        kernels_bwd._chunk_dstate[(n_chunks, batch * n_groups)](
            dy,
            dt,
            A,
            C,
            dstates,
            seq_len,
            n_heads,
            n_groups,
            heads_per_group,
            head_dim,
            state_dim,
            n_chunks,
            out_start,
            Q=chunk_size,
            BP=block_p,
            BN=block_n,
            PREC=prec,
            DOT_F32=_interpreting(),
            num_warps=warps,
        )
    state_numel = head_dim * state_dim
    kernels._state_pass[(batch * n_heads, _cdiv(state_numel, _PASS_BLOCK))](
        dstates,
        totals,
        dfinal_state.contiguous() if dfinal_state is not None else d_init,
        d_init,
        state_numel,
        n_chunks,
        HAS_START=dfinal_state is not None,
        HAS_OWN=has_dy,
        REVERSE=True,
        BLOCK=_PASS_BLOCK,
        CB=_PASS_CHUNKS,
        num_warps=4,
    )
    if n_chunks > 0:
        shape_args = (seq_len, n_heads, n_groups, heads_per_group, head_dim, state_dim, n_chunks, out_start)
        meta = dict(Q=chunk_size, BP=block_p, BN=block_n, PREC=prec, DOT_F32=_interpreting())
        dy_or_x = dy if has_dy else x
        # dB/dC hold two [Q, N] fp32 accumulators: halving N per program avoids spills.
        block_n_dbc = max(16, block_n // 2)
        kernels_bwd._chunk_bwd_dbc[(n_chunks, batch * n_groups, _cdiv(state_dim, block_n_dbc))](
            x,
            dt,
            A,
            B,
            C,
            states,
            dstates,
            dy_or_x,
            dB,
            dC,
            *shape_args,
            HAS_DY=has_dy,
            num_warps=8,
            **{**meta, "BN": block_n_dbc},
        )
        kernels_bwd._chunk_bwd_dx[(n_chunks, batch * n_heads)](
            x,
            dt,
            A,
            B,
            C,
            D if D is not None else A,
            states,
            dstates,
            dy_or_x,
            dx,
            ddt,
            dA_part,
            dD_part,
            *shape_args,
            HAS_D=D is not None,
            HAS_DY=has_dy,
            num_warps=8,
            **meta,
        )
    dA = dA_part.sum(dim=(0, 1)).to(A.dtype)
    if D is not None:
        dD = dD_part.sum(dim=(0, 1)).to(D.dtype) if has_dy else torch.zeros_like(D)
    else:
        dD = A.new_zeros(n_heads)
    return dx, ddt, dA, dB, dC, dD, d_init


@ssd_bwd.register_fake
def _ssd_bwd_fake(dy, dfinal_state, x, dt, A, B, C, D, states, totals, out_start, chunk_size):
    batch, _, n_heads, head_dim = x.shape
    state_dim = B.shape[3]
    dD = D.new_empty(D.shape) if D is not None else A.new_empty(n_heads)
    d_init = x.new_empty(batch, n_heads, head_dim, state_dim, dtype=torch.float32)
    return (
        torch.empty_like(x),
        torch.empty_like(dt),
        torch.empty_like(A),
        torch.empty_like(B),
        torch.empty_like(C),
        dD,
        d_init,
    )


def _setup_context(ctx, inputs, output) -> None:
    x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states = inputs
    _, _, states, totals = output
    ctx.save_for_backward(x, dt, A, B, C, D, states, totals)
    ctx.out_start = out_start
    ctx.chunk_size = chunk_size
    ctx.has_D = D is not None
    ctx.has_init = initial_state is not None
    ctx.init_dtype = initial_state.dtype if initial_state is not None else None


def _backward(ctx, dy, dfinal_state, _dstates, _dtotals):
    x, dt, A, B, C, D, states, totals = ctx.saved_tensors
    if states.numel() == 0 and totals.numel() > 0:
        raise RuntimeError("zoo_triton_ssd::ssd_fwd ran with save_states=False; it cannot be differentiated")
    dx, ddt, dA, dB, dC, dD, d_init = ssd_bwd(
        dy, dfinal_state, x, dt, A, B, C, D, states, totals, ctx.out_start, ctx.chunk_size
    )
    return (
        dx,
        ddt,
        dA,
        dB,
        dC,
        dD if ctx.has_D else None,
        d_init.to(ctx.init_dtype) if ctx.has_init else None,
        None,
        None,
        None,
    )


torch.library.register_autograd(f"{_LIB}::ssd_fwd", _backward, setup_context=_setup_context)
