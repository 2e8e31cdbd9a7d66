"""Triton kernels of the chunked SSD scan: the backward.

Imported lazily, like :mod:`zoo_plugins.triton_ssd.kernels` (legend and the forward there).
Four launches: ``_chunk_dstate`` (each chunk's outputs' pull on its entering state),
``_state_pass`` reversed (the recurrence run backwards: the gradient of the state leaving
each chunk, and of the initial state), then ``_chunk_bwd_dbc`` (dB, dC) and
``_chunk_bwd_dx`` (dx, ddt, per-chunk dA and dD partials). The last two are split so that
neither spills much at chunk 64 on Hopper (ptxas: 0 and ~100 bytes per thread, where one
fused kernel spilled 2.5-4.7 KB). ``_chunk_bwd_dbc`` owns one (batch, group, chunk,
N block) and sums dB/dC over the group's heads in registers (no atomics);
``_chunk_bwd_dx`` owns one (batch, head, chunk).

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

from zoo_plugins.triton_ssd.kernels import _dot


@triton.jit
def _chunk_dstate(
    dy_ptr,
    dt_ptr,
    A_ptr,
    C_ptr,
    dstates_ptr,
    T,
    H,
    G,
    R,
    P,
    N,
    NC,
    out_start,
    Q: tl.constexpr,
    BP: tl.constexpr,
    BN: tl.constexpr,
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    """Pull of chunk c's outputs on its entering state: sum_l exp(acs_l) dy_l^T C_l."""
    c = tl.program_id(0)
    bg = tl.program_id(1)
    b = bg // G
    g = bg % G
    t = c * Q + tl.arange(0, Q)
    tmask = t < T
    p = tl.arange(0, BP)
    n = tl.arange(0, BN)
    pmask = p < P
    nmask = n < N
    Cm = tl.load(
        C_ptr + ((b * T + t[:, None]) * G + g) * N + n[None, :],
        mask=tmask[:, None] & nmask[None, :],
        other=0.0,
    )
    ymask = (tmask & (t >= out_start))[:, None] & pmask[None, :]
    T_out = T - out_start
    for r in range(R):
        h = g * R + r
        A_h = tl.load(A_ptr + h).to(tl.float32)
        dt = tl.load(dt_ptr + (b * T + t) * H + h, mask=tmask, other=0.0).to(tl.float32)
        acs = tl.cumsum(dt * A_h, axis=0)
        dy = tl.load(
            dy_ptr + ((b * T_out + t[:, None] - out_start) * H + h) * P + p[None, :],
            mask=ymask,
            other=0.0,
        )
        dyw = (dy.to(tl.float32) * tl.exp(acs)[:, None]).to(Cm.dtype)
        pull = _dot(tl.trans(dyw), Cm, PREC, DOT_F32)  # [BP, BN]
        base = ((b * H + h) * NC + c) * P * N
        tl.store(
            dstates_ptr + base + p[:, None] * N + n[None, :],
            pull,
            mask=pmask[:, None] & nmask[None, :],
        )


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
    HAS_D: tl.constexpr,
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
    d_leave = tl.load(dstates_ptr + base + pn_off, mask=pn_mask, other=0.0)
    h_in = tl.load(states_ptr + base + pn_off, mask=pn_mask, other=0.0)
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
    if HAS_D:
        if HAS_DY:
            dx += tl.load(D_ptr + h).to(tl.float32) * dy.to(tl.float32)
            dD = tl.sum(tl.sum(xm.to(tl.float32) * dy.to(tl.float32), axis=1), axis=0)
            tl.store(dD_part_ptr + part, dD)
        else:
            tl.store(dD_part_ptr + part, 0.0)
    tl.store(dx_ptr + x_off, dx.to(dx_ptr.dtype.element_ty), mask=xp_mask)
    tl.store(ddt_ptr + (b * T + t) * H + h, ddt.to(ddt_ptr.dtype.element_ty), mask=tmask)
