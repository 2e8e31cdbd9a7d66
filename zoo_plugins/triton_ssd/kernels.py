"""Triton kernels of the chunked SSD scan, forward and backward.

Imported lazily (from :mod:`zoo_plugins.triton_ssd.ops` inside the op bodies), so that
``TRITON_INTERPRET=1`` set by a test's conftest takes effect before any ``@triton.jit``.

Shape legend: B batch, T tokens, H heads, P head dim, G groups, N state dim, R = H // G
heads per group, Q = chunk size, c chunk index, nc = ceil(T / Q). Inside a chunk,
``a_t = dt_t * A_h <= 0`` and ``acs_t = a_0 + ... + a_t`` (cumulative, in-chunk).

Forward, three launches:

1. ``_chunk_state_fwd``  grid (nc, B*G): each chunk's own state
   S_c = sum_s exp(acs_end - acs_s) dt_s x_s B_s^T  [P, N], and the chunk's total decay.
2. ``_state_pass``       grid (B*H, P*N blocks): sequential over chunks (CB at a time);
   overwrites S_c by the state entering chunk c (initial state in, final state out).
3. ``_chunk_out_fwd``    grid (chunks with outputs, B*G): y = intra-chunk quadratic form
   + exp(acs) C h_in + D x, only for tokens t >= out_start (the TransPoint).

Backward, three launches mirroring them: ``_chunk_dstate`` (the output's pull on each
entering state), ``_state_pass`` reversed (the recurrence run backwards -> grad of each chunk's leaving
state, grad of the initial state), then ``_chunk_bwd_dbc`` (dB, dC) and ``_chunk_bwd_dx`` (dx, ddt, per-chunk dA
and dD partials); the two are split so that neither spills registers. A program of
``_chunk_bwd_dbc`` and of the forward chunk kernels owns one (batch, group, chunk) and
loops over the R heads of the group, so B/C tiles (and the C B^T scores) are loaded once
per group and dB/dC are summed over heads in registers (no atomics);
``_chunk_bwd_dx`` owns one (batch, head, chunk).

Tokens past T are loaded as zeros (dt = 0: decay 1, input 0), which is exactly neutral.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _dot(a, b, PREC: tl.constexpr, DOT_F32: tl.constexpr):
    # Triton's CPU interpreter multiplies 16-bit floats wrongly; it gets fp32 operands.
    if DOT_F32:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b, input_precision=PREC)


@triton.jit
def _chunk_state_fwd(
    x_ptr, dt_ptr, A_ptr, B_ptr, states_ptr, totals_ptr,
    T, H, G, R, P, N, NC,
    Q: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, PREC: tl.constexpr, DOT_F32: tl.constexpr,
):
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
    Bm = tl.load(
        B_ptr + ((b * T + t[:, None]) * G + g) * N + n[None, :],
        mask=tmask[:, None] & nmask[None, :], other=0.0,
    )
    for r in range(R):
        h = g * R + r
        A_h = tl.load(A_ptr + h).to(tl.float32)
        dt = tl.load(dt_ptr + (b * T + t) * H + h, mask=tmask, other=0.0).to(tl.float32)
        acs = tl.cumsum(dt * A_h, axis=0)
        total = tl.sum(dt * A_h, axis=0)
        weight = tl.exp(total - acs) * dt
        xm = tl.load(
            x_ptr + ((b * T + t[:, None]) * H + h) * P + p[None, :],
            mask=tmask[:, None] & pmask[None, :], other=0.0,
        )
        xw = (xm.to(tl.float32) * weight[:, None]).to(Bm.dtype)
        state = _dot(tl.trans(xw), Bm, PREC, DOT_F32)  # [BP, BN]
        base = ((b * H + h) * NC + c) * P * N
        tl.store(
            states_ptr + base + p[:, None] * N + n[None, :], state,
            mask=pmask[:, None] & nmask[None, :],
        )
        tl.store(totals_ptr + (b * H + h) * NC + c, total)


@triton.jit
def _state_pass(
    states_ptr, totals_ptr, start_ptr, end_ptr,
    PN, NC,
    HAS_START: tl.constexpr, HAS_OWN: tl.constexpr, REVERSE: tl.constexpr,
    BLOCK: tl.constexpr, CB: tl.constexpr,
):
    """Sequential pass over chunks, CB chunks per step; slot c of ``states`` is replaced.

    Forward: ``own_c`` = chunk c's own state; slot c gets the state entering chunk c;
    ``end`` = final state. Reverse (backward): ``own_c`` = chunk c's outputs' pull on its
    entering state; slot c gets the gradient of the state leaving chunk c; ``end`` = the
    initial state's gradient. Both are s <- exp(total_c) s + own_c in (reversed) order.
    Within a step the CB updates are one [CB, CB] lower-triangular decay matrix, so the
    loads of a step are issued together and the serial chain is NC / CB steps long.
    """
    bh = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < PN
    if HAS_START:
        state = tl.load(start_ptr + bh * PN + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        state = tl.zeros([BLOCK], dtype=tl.float32)
    j = tl.arange(0, CB)
    before = j[None, :] < j[:, None]  # [j, i]: i strictly before j
    for step in range(0, NC, CB):
        if REVERSE:
            chunk = NC - 1 - (step + j)
            cmask = chunk >= 0
        else:
            chunk = step + j
            cmask = chunk < NC
        total = tl.load(totals_ptr + bh * NC + chunk, mask=cmask, other=0.0)
        inclusive = tl.cumsum(total, axis=0)
        exclusive = inclusive - total
        ptrs = states_ptr + (bh * NC + chunk)[:, None] * PN + offs[None, :]
        tile_mask = cmask[:, None] & mask[None, :]
        # slot_j = exp(exclusive_j) s + sum_{i<j} exp(exclusive_j - inclusive_i) own_i
        slot = tl.exp(exclusive)[:, None] * state[None, :]
        step_total = tl.sum(total, axis=0)
        state = tl.exp(step_total) * state
        if HAS_OWN:
            own = tl.load(ptrs, mask=tile_mask, other=0.0)
            weights = tl.where(before, tl.exp(exclusive[:, None] - inclusive[None, :]), 0.0)
            slot += tl.sum(weights[:, :, None] * own[None, :, :], axis=1)
            state += tl.sum(tl.exp(step_total - inclusive)[:, None] * own, axis=0)
        tl.store(ptrs, slot, mask=tile_mask)
    tl.store(end_ptr + bh * PN + offs, state, mask=mask)


@triton.jit
def _chunk_out_fwd(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, states_ptr, y_ptr,
    T, H, G, R, P, N, NC, out_start, first_chunk,
    HAS_D: tl.constexpr, Q: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr,
    PREC: tl.constexpr, DOT_F32: tl.constexpr,
):
    c = tl.program_id(0) + first_chunk
    bg = tl.program_id(1)
    b = bg // G
    g = bg % G
    t = c * Q + tl.arange(0, Q)
    tmask = t < T
    p = tl.arange(0, BP)
    n = tl.arange(0, BN)
    pmask = p < P
    nmask = n < N
    bc_off = ((b * T + t[:, None]) * G + g) * N + n[None, :]
    bc_mask = tmask[:, None] & nmask[None, :]
    Bm = tl.load(B_ptr + bc_off, mask=bc_mask, other=0.0)
    Cm = tl.load(C_ptr + bc_off, mask=bc_mask, other=0.0)
    scores = _dot(Cm, tl.trans(Bm), PREC, DOT_F32)  # [Q(l), Q(s)]
    causal = tl.arange(0, Q)[:, None] >= tl.arange(0, Q)[None, :]
    ymask = (tmask & (t >= out_start))[:, None] & pmask[None, :]
    T_out = T - out_start
    for r in range(R):
        h = g * R + r
        A_h = tl.load(A_ptr + h).to(tl.float32)
        dt = tl.load(dt_ptr + (b * T + t) * H + h, mask=tmask, other=0.0).to(tl.float32)
        acs = tl.cumsum(dt * A_h, axis=0)
        decay = tl.exp(tl.where(causal, acs[:, None] - acs[None, :], float("-inf")))
        xm = tl.load(
            x_ptr + ((b * T + t[:, None]) * H + h) * P + p[None, :],
            mask=tmask[:, None] & pmask[None, :], other=0.0,
        )
        weights = (scores * decay * dt[None, :]).to(xm.dtype)
        y = _dot(weights, xm, PREC, DOT_F32)
        base = ((b * H + h) * NC + c) * P * N
        h_in = tl.load(
            states_ptr + base + p[:, None] * N + n[None, :],
            mask=pmask[:, None] & nmask[None, :], other=0.0,
        )
        y_state = _dot(Cm, tl.trans(h_in.to(Cm.dtype)), PREC, DOT_F32)
        y += tl.exp(acs)[:, None] * y_state
        if HAS_D:
            y += tl.load(D_ptr + h).to(tl.float32) * xm.to(tl.float32)
        tl.store(
            y_ptr + ((b * T_out + t[:, None] - out_start) * H + h) * P + p[None, :],
            y.to(y_ptr.dtype.element_ty), mask=ymask,
        )


@triton.jit
def _chunk_dstate(
    dy_ptr, dt_ptr, A_ptr, C_ptr, dstates_ptr,
    T, H, G, R, P, N, NC, out_start,
    Q: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, PREC: tl.constexpr, DOT_F32: tl.constexpr,
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
        mask=tmask[:, None] & nmask[None, :], other=0.0,
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
            mask=ymask, other=0.0,
        )
        dyw = (dy.to(tl.float32) * tl.exp(acs)[:, None]).to(Cm.dtype)
        pull = _dot(tl.trans(dyw), Cm, PREC, DOT_F32)  # [BP, BN]
        base = ((b * H + h) * NC + c) * P * N
        tl.store(
            dstates_ptr + base + p[:, None] * N + n[None, :], pull,
            mask=pmask[:, None] & nmask[None, :],
        )


@triton.jit
def _chunk_bwd_dbc(
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, states_ptr, dstates_ptr, dy_ptr, dB_ptr, dC_ptr,
    T, H, G, R, P, N, NC, out_start,
    HAS_DY: tl.constexpr,
    Q: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, PREC: tl.constexpr, DOT_F32: tl.constexpr,
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
            mask=tmask[:, None] & pmask[None, :], other=0.0,
        )
        xd = (xm.to(tl.float32) * (tl.exp(total - acs) * dt)[:, None]).to(Bm.dtype)
        base = ((b * H + h) * NC + c) * P * N
        d_leave = tl.load(dstates_ptr + base + pn_off, mask=pn_mask, other=0.0).to(Bm.dtype)
        # State path: S_c = sum_s exp(acs_end - acs_s) dt_s x_s B_s^T.
        dB_acc += _dot(xd, d_leave, PREC, DOT_F32)
        if HAS_DY:
            dy = tl.load(
                dy_ptr + ((b * T_out + t[:, None] - out_start) * H + h) * P + p[None, :],
                mask=ymask, other=0.0,
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
    x_ptr, dt_ptr, A_ptr, B_ptr, C_ptr, D_ptr, states_ptr, dstates_ptr, dy_ptr,
    dx_ptr, ddt_ptr, dA_part_ptr, dD_part_ptr,
    T, H, G, R, P, N, NC, out_start,
    HAS_D: tl.constexpr, HAS_DY: tl.constexpr,
    Q: tl.constexpr, BP: tl.constexpr, BN: tl.constexpr, PREC: tl.constexpr, DOT_F32: tl.constexpr,
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
            mask=ymask, other=0.0,
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
