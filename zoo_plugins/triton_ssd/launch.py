"""The Triton SSD's launch sequences: forward and backward over a whole call, on the host.

Shape legend as in :mod:`zoo_plugins.triton_ssd.kernels`. ``forward`` / ``backward`` are the
bodies of the ``zoo_triton_ssd`` custom ops (:mod:`zoo_plugins.triton_ssd.ops`): they allocate
the outputs, cut the batch into int32-safe slices (:func:`~zoo_plugins.triton_ssd.plan.batch_slices`)
and launch the kernels of each slice by the plan of :mod:`zoo_plugins.triton_ssd.plan`. The
kernels modules are imported inside the functions only (see the package docstring for why).
"""

from __future__ import annotations

import torch
from torch import Tensor

from zoo_plugins.triton_ssd.plan import (
    PASS_BLOCK,
    PASS_CHUNKS,
    Walk,
    batch_slices,
    cdiv,
    chunk_launch,
    effective_chunk,
    saved_dtype,
)
from zoo_plugins.triton_ssd.plan import walk as plan_walk
from zoo_plugins.triton_ssd.tuning import DEFAULT, Tuning


def _chain_segments(
    own: Tensor, totals: Tensor, start: Tensor | None, end: Tensor, walk: Walk, *, has_own: bool, reverse: bool
) -> None:
    """The sequential pass over segments (``kernels._state_pass``): ``own`` slots become the
    states (forward) or state gradients (reverse) at the segment boundaries, ``end`` the one
    entering the last segment (forward) or leaving the first (reverse)."""
    from zoo_plugins.triton_ssd import kernels

    rows, state_numel = own.shape[0] * own.shape[1], own.shape[3] * own.shape[4]
    kernels._state_pass[(rows, cdiv(state_numel, PASS_BLOCK))](
        own,
        totals,
        start if start is not None else end,
        end,
        state_numel,
        walk.n_segments - 1,
        walk.slots,
        HAS_START=start is not None,
        HAS_OWN=has_own,
        REVERSE=reverse,
        BLOCK=PASS_BLOCK,
        CB=PASS_CHUNKS,
        num_warps=4,
    )


def forward(
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
    tuning: Tuning = DEFAULT,
) -> tuple[Tensor, Tensor, Tensor]:
    x, dt, A, B, C = (v.contiguous() for v in (x, dt, A, B, C))
    batch, seq_len, n_heads, head_dim = x.shape
    n_groups, state_dim = B.shape[2], B.shape[3]
    chunk_size = effective_chunk(chunk_size, x)
    n_chunks = cdiv(seq_len, chunk_size)
    rows = batch * n_heads
    f32 = dict(device=x.device, dtype=torch.float32)
    y = torch.empty(batch, seq_len - out_start, n_heads, head_dim, device=x.device, dtype=x.dtype)
    final_state = torch.empty(batch, n_heads, head_dim, state_dim, **f32)
    if save_states:
        states = torch.empty(batch, n_heads, n_chunks, head_dim, state_dim, device=x.device, dtype=saved_dtype(x))
    else:
        states = torch.empty(0, device=x.device, dtype=saved_dtype(x))
    init = initial_state.contiguous() if initial_state is not None else None
    if n_chunks == 0 or rows == 0:  # nothing to scan: T = 0 or an empty batch
        return y, final_state.copy_(init) if init is not None else final_state.zero_(), states
    D = _skip_weights(D, A)
    slices = batch_slices(x, n_groups, state_dim, chunk_size, save_states)
    if len(slices) == 1:  # the usual case: no views to make (host time counts at B=1)
        _fwd_rows(x, dt, A, B, C, D, init, out_start, chunk_size, save_states, tuning, y, final_state, states)
        return y, final_state, states
    for a, b in slices:
        _fwd_rows(
            x[a:b],
            dt[a:b],
            A,
            B[a:b],
            C[a:b],
            D,
            init[a:b] if init is not None else None,
            out_start,
            chunk_size,
            save_states,
            tuning,
            y[a:b],
            final_state[a:b],
            states[a:b] if save_states else states,
        )
    return y, final_state, states


def _skip_weights(D: Tensor | None, A: Tensor) -> Tensor:
    """D, or zeros when there is none. The kernels always add D x: on the H200 (Triton 3.6),
    the bf16 forward compiled without that term (a constexpr branch) and software-pipelined
    gave wrong outputs (relative error ~1 against the fp64 reference at T = 64 to 8192, H = 48,
    P = 64, N = 128, chunk 64; correct with D, at one stage, and in fp32)."""
    return D if D is not None else torch.zeros(A.shape[0], device=A.device, dtype=torch.float32)


def _slice_walk(x: Tensor, B: Tensor, chunk_size: int, tuning: Tuning) -> tuple[Walk, int]:
    """The plan of one batch slice, and its number of (batch, head) rows."""
    n_groups, state_dim = B.shape[2], B.shape[3]
    walk = plan_walk(x, n_groups, state_dim, chunk_size, cdiv(x.shape[1], chunk_size), tuning)
    return walk, x.shape[0] * x.shape[2]


def _fwd_rows(x, dt, A, B, C, D, init, out_start, chunk_size, save_states, tuning, y, final_state, states) -> None:
    """The forward's launches over a batch slice (offsets within int32), into y / final_state /
    states; D is never None here (``_skip_weights``)."""
    from zoo_plugins.triton_ssd import kernels

    walk, rows = _slice_walk(x, B, chunk_size, tuning)
    seg = final_state
    last = init
    if walk.n_segments > 1:
        seg, seg_total, last = walk.segment_buffers(x)
        kernels._seg_state_fwd[(rows, walk.n_segments - 1)](
            x, dt, A, B, seg, seg_total, *walk.shape, walk.slots, **walk.launch, **walk.meta
        )
        _chain_segments(seg, seg_total, init, last, walk, has_own=True, reverse=False)
    # Segments before the TransPoint's have no outputs: skipped unless states are saved.
    n_segments = walk.n_segments
    first_segment = 0 if save_states else min(out_start // chunk_size // walk.per_segment, n_segments - 1)
    kernels._seg_scan_fwd[(rows, n_segments - first_segment)](
        x,
        dt,
        A,
        B,
        C,
        D,
        seg,
        last if last is not None else final_state,
        states if save_states else final_state,
        y,
        final_state,
        *walk.shape,
        n_segments,
        walk.slots,
        out_start,
        first_segment,
        HAS_LAST=last is not None,
        SAVE=save_states,
        **walk.launch,
        **walk.meta,
    )


def backward(
    dy: Tensor | None,
    dfinal_state: Tensor | None,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    states: Tensor,
    out_start: int,
    chunk_size: int,
    tuning: Tuning = DEFAULT,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of x, dt, A, B, C, D and the initial state.

    ``states`` are the chunks' entering states the forward saved; empty (the forward ran with
    ``save_states=False``) means rebuild them here from ``initial_state`` by the forward's
    state walk with no outputs (``out_start = T``): the same kernels and launches, so the
    rebuilt states equal the saved ones bit for bit, for one extra walk of x, dt and B.
    """
    x, dt, A, B, C = (v.contiguous() for v in (x, dt, A, B, C))
    batch, seq_len, n_heads, head_dim = x.shape
    n_groups, state_dim = B.shape[2], B.shape[3]
    chunk_size = effective_chunk(chunk_size, x)
    n_chunks = cdiv(seq_len, chunk_size)
    rows = batch * n_heads
    f32 = dict(device=x.device, dtype=torch.float32)
    has_dy = dy is not None and seq_len > out_start
    dx = torch.empty_like(x)
    ddt = torch.empty_like(dt)
    dB = torch.empty_like(B)
    dC = torch.empty_like(C) if has_dy else torch.zeros_like(C)
    d_init = torch.empty(batch, n_heads, head_dim, state_dim, **f32)
    dfinal = dfinal_state.contiguous() if dfinal_state is not None else None
    if n_chunks == 0 or rows == 0:
        d_init = d_init.copy_(dfinal) if dfinal is not None else d_init.zero_()
        dD = torch.zeros_like(D) if D is not None else A.new_zeros(n_heads)
        return dx, ddt, torch.zeros_like(A), dB, dC, dD, d_init
    if states.numel() == 0:  # not saved: recompute (transient, freed with this call)
        states = forward(x, dt, A, B, C, D, initial_state, seq_len, chunk_size, True, tuning)[2]
    dstates = torch.empty(batch, n_heads, n_chunks, head_dim, state_dim, device=x.device, dtype=saved_dtype(x))
    dA_part = torch.empty(batch, n_chunks, n_heads, **f32)
    dD_part = torch.empty(batch, n_chunks, n_heads, **f32)
    dy_or_x = dy.contiguous() if has_dy else x
    outs = (dx, ddt, dB, dC, d_init, dstates, dA_part, dD_part)
    skip = _skip_weights(D, A)
    slices = batch_slices(x, n_groups, state_dim, chunk_size, True)
    if len(slices) == 1:
        _bwd_rows(dy_or_x, has_dy, dfinal, x, dt, A, B, C, skip, states, out_start, chunk_size, tuning, outs)
    else:
        for a, b in slices:
            _bwd_rows(
                dy_or_x[a:b],
                has_dy,
                dfinal[a:b] if dfinal is not None else None,
                x[a:b],
                dt[a:b],
                A,
                B[a:b],
                C[a:b],
                skip,
                states[a:b],
                out_start,
                chunk_size,
                tuning,
                tuple(out[a:b] for out in outs),
            )
    dA = dA_part.sum(dim=(0, 1)).to(A.dtype)
    if D is not None:
        dD = dD_part.sum(dim=(0, 1)).to(D.dtype) if has_dy else torch.zeros_like(D)
    else:
        dD = A.new_zeros(n_heads)
    return dx, ddt, dA, dB, dC, dD, d_init


def _bwd_rows(dy_or_x, has_dy, dfinal, x, dt, A, B, C, D, states, out_start, chunk_size, tuning, outs) -> None:
    """The backward's launches over a batch slice (offsets within int32), into ``outs``; D is
    never None here (``_skip_weights``)."""
    from zoo_plugins.triton_ssd import kernels_bwd

    dx, ddt, dB, dC, d_init, dstates, dA_part, dD_part = outs
    walk, rows = _slice_walk(x, B, chunk_size, tuning)
    batch, n_groups, state_dim, n_chunks = x.shape[0], B.shape[2], B.shape[3], walk.shape[6]
    seg = d_init
    first = dfinal
    if walk.n_segments > 1:
        seg, seg_total, first = walk.segment_buffers(x)
        kernels_bwd._seg_dstate_rev[(rows, walk.n_segments - 1)](
            dy_or_x,
            dt,
            A,
            C,
            seg,
            seg_total,
            *walk.shape,
            walk.slots,
            out_start,
            HAS_DY=has_dy,
            **walk.launch,
            **walk.meta,
        )
        _chain_segments(seg, seg_total, dfinal, first, walk, has_own=has_dy, reverse=True)
    kernels_bwd._seg_dstate_store[(rows, walk.n_segments)](
        dy_or_x,
        dt,
        A,
        C,
        seg,
        first if first is not None else d_init,
        dstates,
        d_init,
        *walk.shape,
        walk.slots,
        out_start,
        HAS_FIRST=first is not None,
        HAS_DY=has_dy,
        **walk.launch,
        **walk.meta,
    )
    shape_args = (*walk.shape[:-1], out_start)  # the chunk kernels: T .. nc, then out_start (no segments)
    launch = chunk_launch(x.dtype, chunk_size, tuning)
    # dB/dC hold two [Q, N] fp32 accumulators: halving N per program avoids spills.
    block_n_dbc = max(16, walk.meta["BN"] // 2)
    kernels_bwd._chunk_bwd_dbc[(n_chunks, batch * n_groups, cdiv(state_dim, block_n_dbc))](
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
        **launch,
        **{**walk.meta, "BN": block_n_dbc},
    )
    kernels_bwd._chunk_bwd_dx[(n_chunks, rows)](
        x,
        dt,
        A,
        B,
        C,
        D,
        states,
        dstates,
        dy_or_x,
        dx,
        ddt,
        dA_part,
        dD_part,
        *shape_args,
        HAS_DY=has_dy,
        **launch,
        **walk.meta,
    )
