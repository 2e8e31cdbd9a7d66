"""Triton kernels of the SSD scan: the backward.

Imported lazily, like :mod:`zoo_plugins.triton_ssd.kernels` (legend and the forward there).
The forward saved each chunk's entering state (dtype of x). Launches:

1. ``_seg_dstate_rev``   (only with several segments) grid (rows, nseg - 1):
   each segment s >= 1 walked backwards from zero: its outputs' pull on the state
   entering it, and its total log-decay.
2. ``_state_pass`` reversed over those segments: the gradient of the state leaving each.
3. ``_seg_dstate_store`` grid (rows, nseg): walks each segment backwards from
   the gradient leaving it, storing the gradient of the state leaving every chunk (dtype
   of x); segment 0 ends with the initial state's gradient.
4. ``_chunk_bwd_dbc`` (dB, dC) and ``_chunk_bwd_dx`` (dx, ddt, per-chunk dA and dD
   partials), chunk-parallel. They are split so that neither spills much at chunk 64 on
   Hopper (ptxas: 0 and ~100 bytes per thread, where one fused kernel spilled 2.5-4.7 KB).
   ``_chunk_bwd_dbc`` owns one (batch, group, chunk, N block) and sums dB/dC over the
   group's heads in registers (no atomics); ``_chunk_bwd_dx`` owns one (batch, head, chunk).

The forward that the gradients follow, per chunk with xd_s = dt_s x_s and
decay[l, s] = exp(acs_l - acs_s) (s <= l):

    y_l    = sum_s (C_l . B_s) decay[l, s] xd_s + exp(acs_l) C_l h_in + D x_l
    h_next = exp(acs_end) h_in + sum_s exp(acs_end - acs_s) xd_s B_s^T

Gradients with respect to acs (the in-chunk cumulative log-decay) are summed from the end
(reverse cumsum) to give those of a_t = dt_t A, hence ddt and dA.
"""

from __future__ import annotations

import triton
import triton.language as tl

from zoo_plugins.triton_ssd.kernels import _chunk_decay, _dot, _row_tile, _store_slot


@triton.jit
def _chunk_pull(
    dy_ptr,
    C_ptr,
    acs,
    t,
    tmask,
    b,
    h,
    g,
    p,
    n,
    pmask,
    nmask,
    T,
    H,
    G,
    P,
    N,
    out_start,
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    """Pull of one chunk's outputs on its entering state: sum_l exp(acs_l) dy_l^T C_l [BP, BN]."""
    Cm = tl.load(
        C_ptr + ((b * T + t[:, None]) * G + g) * N + n[None, :],
        mask=tmask[:, None] & nmask[None, :],
        other=0.0,
    )
    dy = tl.load(
        dy_ptr + ((b * (T - out_start) + t[:, None] - out_start) * H + h) * P + p[None, :],
        mask=(tmask & (t >= out_start))[:, None] & pmask[None, :],
        other=0.0,
    )
    dyw = (dy.to(tl.float32) * tl.exp(acs)[:, None]).to(Cm.dtype)
    return _dot(tl.trans(dyw), Cm, PREC, DOT_F32)


@triton.jit
def _seg_dstate_rev(
    dy_ptr,
    dt_ptr,
    A_ptr,
    C_ptr,
    seg_ptr,
    seg_total_ptr,
    T,
    H,
    G,
    R,
    P,
    N,
    NC,
    CPS,
    NS,
    out_start,
    HAS_DY: tl.constexpr,
    Q: tl.constexpr,
    BP: tl.constexpr,
    BN: tl.constexpr,
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    """Segment s >= 1 walked backwards from a zero gradient: its outputs' pull on the state
    entering it, into slot s - 1, and its total log-decay."""
    row = tl.program_id(0)
    s = tl.program_id(1) + 1
    b, h, g, p, n, pmask, nmask = _row_tile(row, H, R, P, N, BP, BN)
    A_h = tl.load(A_ptr + h).to(tl.float32)
    grad = tl.zeros([BP, BN], dtype=tl.float32)
    decay_sum = tl.zeros([Q], dtype=tl.float32)
    c_first = s * CPS
    c_end = tl.minimum(c_first + CPS, NC)
    for i in range(0, c_end - c_first):
        c = c_end - 1 - i
        t, tmask, dt, acs, total = _chunk_decay(dt_ptr, A_h, b, h, c, T, H, Q)
        decay_sum += dt * A_h
        grad = grad * tl.exp(total)
        if HAS_DY:
            if (c + 1) * Q > out_start:
                grad += _chunk_pull(
                    dy_ptr, C_ptr, acs, t, tmask, b, h, g, p, n, pmask, nmask, T, H, G, P, N, out_start, PREC, DOT_F32
                )
    _store_slot(seg_ptr, seg_total_ptr, row * NS + s - 1, grad, tl.sum(decay_sum, axis=0), p, n, pmask, nmask, P, N)


@triton.jit
def _seg_dstate_store(
    dy_ptr,
    dt_ptr,
    A_ptr,
    C_ptr,
    seg_ptr,
    first_ptr,
    dstates_ptr,
    d_init_ptr,
    T,
    H,
    G,
    R,
    P,
    N,
    NC,
    CPS,
    NS,
    out_start,
    HAS_FIRST: tl.constexpr,
    HAS_DY: tl.constexpr,
    Q: tl.constexpr,
    BP: tl.constexpr,
    BN: tl.constexpr,
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    """Walk segment s backwards from the gradient of the state leaving it, storing the
    gradient of the state leaving each chunk; segment 0 ends with the initial state's.

    Gradient leaving segment s: slot s - 1 of ``seg`` (s >= 1), else ``first`` (the
    reversed state pass's end, or the final state's gradient when there is one segment),
    else zero.
    """
    row = tl.program_id(0)
    s = tl.program_id(1)
    b, h, g, p, n, pmask, nmask = _row_tile(row, H, R, P, N, BP, BN)
    pn_off = p[:, None] * N + n[None, :]
    pn_mask = pmask[:, None] & nmask[None, :]
    if s > 0:
        grad = tl.load(seg_ptr + (row * NS + s - 1) * P * N + pn_off, mask=pn_mask, other=0.0)
    elif HAS_FIRST:
        grad = tl.load(first_ptr + row * P * N + pn_off, mask=pn_mask, other=0.0).to(tl.float32)
    else:
        grad = tl.zeros([BP, BN], dtype=tl.float32)
    A_h = tl.load(A_ptr + h).to(tl.float32)
    c_first = s * CPS
    c_end = tl.minimum(c_first + CPS, NC)
    for i in range(0, c_end - c_first):
        c = c_end - 1 - i
        tl.store(
            dstates_ptr + (row * NC + c) * P * N + pn_off,
            grad.to(dstates_ptr.dtype.element_ty),
            mask=pn_mask,
        )
        t, tmask, dt, acs, total = _chunk_decay(dt_ptr, A_h, b, h, c, T, H, Q)
        grad = grad * tl.exp(total)
        if HAS_DY:
            if (c + 1) * Q > out_start:
                grad += _chunk_pull(
                    dy_ptr, C_ptr, acs, t, tmask, b, h, g, p, n, pmask, nmask, T, H, G, P, N, out_start, PREC, DOT_F32
                )
    if s == 0:
        tl.store(d_init_ptr + row * P * N + pn_off, grad, mask=pn_mask)


@triton.jit
def _chunk_bwd_dbc(
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    states_ptr,
    dstates_ptr,
    dy_ptr,
    dB_ptr,
    dC_ptr,
    T,
    H,
    G,
    R,
    P,
    N,
    NC,
    out_start,
    HAS_DY: tl.constexpr,
    Q: tl.constexpr,
    BP: tl.constexpr,
    BN: tl.constexpr,
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    """dB and dC of one (batch, group, chunk), a BN-wide block of N (grid axis 2), summed
    over the group's heads in registers. Every term is column-wise in N, so N splits freely."""
    c = tl.program_id(0)
    bg = tl.program_id(1)
    b = bg // G
    g = bg % G
    t = c * Q + tl.arange(0, Q)
    tmask = t < T
    p = tl.arange(0, BP)
    n = tl.program_id(2) * BN + tl.arange(0, BN)
    pmask = p < P
    nmask = n < N
    bc_off = ((b * T + t[:, None]) * G + g) * N + n[None, :]
    bc_mask = tmask[:, None] & nmask[None, :]
    pn_off = p[:, None] * N + n[None, :]
    pn_mask = pmask[:, None] & nmask[None, :]
    Bm = tl.load(B_ptr + bc_off, mask=bc_mask, other=0.0)
    dB_acc = tl.zeros([Q, BN], dtype=tl.float32)
    if HAS_DY:
        Cm = tl.load(C_ptr + bc_off, mask=bc_mask, other=0.0)
        causal = tl.arange(0, Q)[:, None] >= tl.arange(0, Q)[None, :]
        dC_acc = tl.zeros([Q, BN], dtype=tl.float32)
        ymask = (tmask & (t >= out_start))[:, None] & pmask[None, :]
        T_out = T - out_start
    for r in range(R):
        h = g * R + r
        A_h = tl.load(A_ptr + h).to(tl.float32)
        dt = tl.load(dt_ptr + (b * T + t) * H + h, mask=tmask, other=0.0).to(tl.float32)
        acs = tl.cumsum(dt * A_h, axis=0)
        total = tl.sum(dt * A_h, axis=0)
        xm = tl.load(
            x_ptr + ((b * T + t[:, None]) * H + h) * P + p[None, :],
            mask=tmask[:, None] & pmask[None, :],
            other=0.0,
        )
        xd = (xm.to(tl.float32) * (tl.exp(total - acs) * dt)[:, None]).to(Bm.dtype)
        base = ((b * H + h) * NC + c) * P * N
        d_leave = tl.load(dstates_ptr + base + pn_off, mask=pn_mask, other=0.0).to(Bm.dtype)
        # State path: S_c = sum_s exp(acs_end - acs_s) dt_s x_s B_s^T.
        dB_acc += _dot(xd, d_leave, PREC, DOT_F32)
        if HAS_DY:
            dy = tl.load(
                dy_ptr + ((b * T_out + t[:, None] - out_start) * H + h) * P + p[None, :],
                mask=ymask,
                other=0.0,
            )
            decay = tl.exp(tl.where(causal, acs[:, None] - acs[None, :], float("-inf")))
            dy_x = _dot(dy, tl.trans(xm), PREC, DOT_F32) * (dt[None, :] * decay)  # [l, s]
            dy_x = dy_x.to(Bm.dtype)
            dC_acc += _dot(dy_x, Bm, PREC, DOT_F32)
            dB_acc += _dot(tl.trans(dy_x), Cm, PREC, DOT_F32)
            h_in = tl.load(states_ptr + base + pn_off, mask=pn_mask, other=0.0).to(Cm.dtype)
            dC_acc += tl.exp(acs)[:, None] * _dot(dy, h_in, PREC, DOT_F32)
    tl.store(dB_ptr + bc_off, dB_acc.to(dB_ptr.dtype.element_ty), mask=bc_mask)
    if HAS_DY:
        tl.store(dC_ptr + bc_off, dC_acc.to(dC_ptr.dtype.element_ty), mask=bc_mask)


@triton.jit
def _chunk_bwd_dx(
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    states_ptr,
    dstates_ptr,
    dy_ptr,
    dx_ptr,
    ddt_ptr,
    dA_part_ptr,
    dD_part_ptr,
    T,
    H,
    G,
    R,
    P,
    N,
    NC,
    out_start,
    HAS_DY: tl.constexpr,
    Q: tl.constexpr,
    BP: tl.constexpr,
    BN: tl.constexpr,
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    """dx, ddt and the per-chunk dA / dD partials of one (batch, head, chunk)."""
    c = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    g = h // R
    t = c * Q + tl.arange(0, Q)
    tmask = t < T
    p = tl.arange(0, BP)
    n = tl.arange(0, BN)
    pmask = p < P
    nmask = n < N
    bc_off = ((b * T + t[:, None]) * G + g) * N + n[None, :]
    bc_mask = tmask[:, None] & nmask[None, :]
    pn_off = p[:, None] * N + n[None, :]
    pn_mask = pmask[:, None] & nmask[None, :]
    xp_mask = tmask[:, None] & pmask[None, :]
    Bm = tl.load(B_ptr + bc_off, mask=bc_mask, other=0.0)
    A_h = tl.load(A_ptr + h).to(tl.float32)
    dt = tl.load(dt_ptr + (b * T + t) * H + h, mask=tmask, other=0.0).to(tl.float32)
    acs = tl.cumsum(dt * A_h, axis=0)
    total = tl.sum(dt * A_h, axis=0)
    to_end = tl.exp(total - acs)
    x_off = ((b * T + t[:, None]) * H + h) * P + p[None, :]
    xm = tl.load(x_ptr + x_off, mask=xp_mask, other=0.0)
    base = ((b * H + h) * NC + c) * P * N
    d_leave = tl.load(dstates_ptr + base + pn_off, mask=pn_mask, other=0.0).to(tl.float32)
    h_in = tl.load(states_ptr + base + pn_off, mask=pn_mask, other=0.0).to(tl.float32)
    # h_next = exp(total) h_in + S_c: the decay of the whole chunk.
    dtotal = tl.exp(total) * tl.sum(tl.sum(d_leave * h_in, axis=1), axis=0)
    pull_B = _dot(Bm, tl.trans(d_leave.to(Bm.dtype)), PREC, DOT_F32)  # [Q, BP]
    dxd = to_end[:, None] * pull_B
    state_term = to_end * dt * tl.sum(xm.to(tl.float32) * pull_B, axis=1)
    dacs = -state_term
    dtotal += tl.sum(state_term, axis=0)
    if HAS_DY:
        Cm = tl.load(C_ptr + bc_off, mask=bc_mask, other=0.0)
        causal = tl.arange(0, Q)[:, None] >= tl.arange(0, Q)[None, :]
        T_out = T - out_start
        ymask = (tmask & (t >= out_start))[:, None] & pmask[None, :]
        dy = tl.load(
            dy_ptr + ((b * T_out + t[:, None] - out_start) * H + h) * P + p[None, :],
            mask=ymask,
            other=0.0,
        )
        decay = tl.exp(tl.where(causal, acs[:, None] - acs[None, :], float("-inf")))
        scores_decay = _dot(Cm, tl.trans(Bm), PREC, DOT_F32) * decay  # [l, s]
        dxd += _dot(tl.trans(scores_decay.to(dy.dtype)), dy, PREC, DOT_F32)
        # dy_l . x_s from the exact inputs, then * dt_s in fp32 (dA sums these with cancellation).
        intra = scores_decay * _dot(dy, tl.trans(xm), PREC, DOT_F32) * dt[None, :]
        dacs += tl.sum(intra, axis=1) - tl.sum(intra, axis=0)
        # Read-out of the entering state: y_l += exp(acs_l) C_l h_in^T.
        readout = _dot(Cm, tl.trans(h_in.to(Cm.dtype)), PREC, DOT_F32)  # [Q, BP]
        dacs += tl.exp(acs) * tl.sum(dy.to(tl.float32) * readout, axis=1)
    da = tl.cumsum(dacs, axis=0, reverse=True) + dtotal
    dx = dxd * dt[:, None]
    ddt = tl.sum(xm.to(tl.float32) * dxd, axis=1) + da * A_h
    part = (b * NC + c) * H + h
    tl.store(dA_part_ptr + part, tl.sum(da * dt, axis=0))
    if HAS_DY:  # D = 0 when the caller has none (see kernels._seg_scan_fwd)
        dx += tl.load(D_ptr + h).to(tl.float32) * dy.to(tl.float32)
        dD = tl.sum(tl.sum(xm.to(tl.float32) * dy.to(tl.float32), axis=1), axis=0)
        tl.store(dD_part_ptr + part, dD)
    else:
        tl.store(dD_part_ptr + part, 0.0)
    tl.store(dx_ptr + x_off, dx.to(dx_ptr.dtype.element_ty), mask=xp_mask)
    tl.store(ddt_ptr + (b * T + t) * H + h, ddt.to(ddt_ptr.dtype.element_ty), mask=tmask)
