"""Triton kernels of the SSD scan: the forward, and the state pass both directions use.

Imported lazily (from :mod:`zoo_plugins.triton_ssd.ops` inside the op bodies), so that
``TRITON_INTERPRET=1`` set by a test's conftest takes effect before any ``@triton.jit``.

Shape legend: B batch, T tokens, H heads, P head dim, G groups, N state dim, R = H // G
heads per group, Q = chunk size, c chunk index, nc = ceil(T / Q). Inside a chunk,
``a_t = dt_t * A_h <= 0`` and ``acs_t = a_0 + ... + a_t`` (cumulative, in-chunk).
A *segment* is a run of ``CPS`` consecutive chunks; a row is one (batch, head).

Design: the state walks. A program owns one (row, segment) and carries the
[P, N] fp32 state across the chunks of its segment in registers, so the per-chunk
states never round-trip through HBM (they did in the three-kernel chunked design, and
that traffic was the measured limiter: 6.4 GB at T=64K). Segments exist only to give the
GPU enough programs when B*H is small; with one segment the forward is one launch.

1. ``_seg_state_fwd``  grid (rows, nseg - 1): each segment's own state (from zero) and
   its total log-decay; reads x, dt, B only.
2. ``_state_pass``     grid (rows, PN blocks): sequential over the segments; slot s gets
   the state entering segment s, ``end`` the state entering the last one.
3. ``_seg_scan_fwd``   grid (rows, segments): walks its segment from its
   entering state: y = intra-chunk quadratic form + exp(acs) C h + D x for tokens
   t >= out_start (the TransPoint), then h <- exp(total) h + sum_s w_s x_s B_s^T. It
   stores each chunk's entering state (in the dtype of x) when a backward will need it,
   and the last segment stores the final state.

The backward is in :mod:`zoo_plugins.triton_ssd.kernels_bwd`; it mirrors this (a reverse
walk for the state gradients, ``_state_pass`` reversed over segments).

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
def _row_tile(row, H, R, P, N, BP: tl.constexpr, BN: tl.constexpr):
    """A (batch, head) row's batch, head and group, and the indices and masks of its
    [BP, BN] state tile."""
    h = row % H
    p = tl.arange(0, BP)
    n = tl.arange(0, BN)
    return row // H, h, h // R, p, n, p < P, n < N


@triton.jit
def _store_slot(seg_ptr, seg_total_ptr, slot, value, total, p, n, pmask, nmask, P, N):
    """Slot ``slot`` of the per-segment buffers: a [P, N] state (or gradient), its log-decay."""
    tl.store(seg_ptr + (slot * P + p[:, None]) * N + n[None, :], value, mask=pmask[:, None] & nmask[None, :])
    tl.store(seg_total_ptr + slot, total)


@triton.jit
def _chunk_decay(dt_ptr, A_h, b, h, c, T, H, Q: tl.constexpr):
    """One chunk's tokens, their mask, dt, in-chunk cumulative log-decay and total."""
    t = c * Q + tl.arange(0, Q)
    tmask = t < T
    dt = tl.load(dt_ptr + (b * T + t) * H + h, mask=tmask, other=0.0).to(tl.float32)
    a = dt * A_h
    return t, tmask, dt, tl.cumsum(a, axis=0), tl.sum(a, axis=0)


@triton.jit
def _seg_state_fwd(
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
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
    Q: tl.constexpr,
    BP: tl.constexpr,
    BN: tl.constexpr,
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    """Own state of segment s (entering state zero) and its total log-decay, into slot s."""
    row = tl.program_id(0)
    s = tl.program_id(1)
    b, h, g, p, n, pmask, nmask = _row_tile(row, H, R, P, N, BP, BN)
    A_h = tl.load(A_ptr + h).to(tl.float32)
    state = tl.zeros([BP, BN], dtype=tl.float32)
    decay_sum = tl.zeros([Q], dtype=tl.float32)
    c_end = tl.minimum(s * CPS + CPS, NC)
    for c in range(s * CPS, c_end):
        t, tmask, dt, acs, total = _chunk_decay(dt_ptr, A_h, b, h, c, T, H, Q)
        decay_sum += dt * A_h
        xm = tl.load(
            x_ptr + ((b * T + t[:, None]) * H + h) * P + p[None, :],
            mask=tmask[:, None] & pmask[None, :],
            other=0.0,
        )
        Bm = tl.load(
            B_ptr + ((b * T + t[:, None]) * G + g) * N + n[None, :],
            mask=tmask[:, None] & nmask[None, :],
            other=0.0,
        )
        xw = (xm.to(tl.float32) * (tl.exp(total - acs) * dt)[:, None]).to(Bm.dtype)
        state = state * tl.exp(total) + _dot(tl.trans(xw), Bm, PREC, DOT_F32)
    _store_slot(seg_ptr, seg_total_ptr, row * NS + s, state, tl.sum(decay_sum, axis=0), p, n, pmask, nmask, P, N)


@triton.jit
def _state_pass(
    states_ptr,
    totals_ptr,
    start_ptr,
    end_ptr,
    PN,
    NC,
    NS,
    HAS_START: tl.constexpr,
    HAS_OWN: tl.constexpr,
    REVERSE: tl.constexpr,
    BLOCK: tl.constexpr,
    CB: tl.constexpr,
):
    """Sequential pass over NC slots (row stride NS), CB at a time; each slot is replaced.

    Forward: ``own_c`` = slot c's own state; slot c gets the state entering it; ``end`` =
    the state after the last. Reverse (backward): ``own_c`` = slot c's outputs' pull on
    its entering state; slot c gets the gradient of the state leaving it; ``end`` = the
    gradient of the state entering slot 0. Both are s <- exp(total_c) s + own_c in
    (reversed) order. Within a step the CB updates are one [CB, CB] lower-triangular decay
    matrix, so the loads of a step are issued together and the chain is NC / CB long.
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
            earlier = chunk + 1
        else:
            chunk = step + j
            cmask = chunk < NC
            earlier = chunk - 1
        total = tl.load(totals_ptr + bh * NS + chunk, mask=cmask, other=0.0)
        # The exclusive sums come from a scan of the slots before each one, never as
        # inclusive - total: that difference rounds with slot j's own total, so a state
        # entering slot j would change (by an ulp) with inputs that come after it.
        shifted = tl.load(totals_ptr + bh * NS + earlier, mask=cmask & (j > 0), other=0.0)
        exclusive = tl.cumsum(shifted, axis=0)
        inclusive = exclusive + total
        ptrs = states_ptr + (bh * NS + chunk)[:, None] * PN + offs[None, :]
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
def _seg_scan_fwd(
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    seg_ptr,
    last_ptr,
    states_ptr,
    y_ptr,
    final_ptr,
    T,
    H,
    G,
    R,
    P,
    N,
    NC,
    CPS,
    NSEG,
    NS,
    out_start,
    first_seg,
    HAS_LAST: tl.constexpr,
    SAVE: tl.constexpr,
    Q: tl.constexpr,
    BP: tl.constexpr,
    BN: tl.constexpr,
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    """Walk one segment from its entering state: outputs, saved chunk states, final state.

    Entering state of segment s: slot s of ``seg`` (s < NSEG - 1), else ``last`` (the
    state pass's end, or the initial state when there is one segment), else zero.
    """
    row = tl.program_id(0)
    s = tl.program_id(1) + first_seg
    b, h, g, p, n, pmask, nmask = _row_tile(row, H, R, P, N, BP, BN)
    pn_off = p[:, None] * N + n[None, :]
    pn_mask = pmask[:, None] & nmask[None, :]
    if s < NSEG - 1:
        state = tl.load(seg_ptr + (row * NS + s) * P * N + pn_off, mask=pn_mask, other=0.0)
    elif HAS_LAST:
        state = tl.load(last_ptr + row * P * N + pn_off, mask=pn_mask, other=0.0).to(tl.float32)
    else:
        state = tl.zeros([BP, BN], dtype=tl.float32)
    A_h = tl.load(A_ptr + h).to(tl.float32)
    causal = tl.arange(0, Q)[:, None] >= tl.arange(0, Q)[None, :]
    T_out = T - out_start
    c_end = tl.minimum(s * CPS + CPS, NC)
    for c in range(s * CPS, c_end):
        t, tmask, dt, acs, total = _chunk_decay(dt_ptr, A_h, b, h, c, T, H, Q)
        bc_off = ((b * T + t[:, None]) * G + g) * N + n[None, :]
        bc_mask = tmask[:, None] & nmask[None, :]
        xm = tl.load(
            x_ptr + ((b * T + t[:, None]) * H + h) * P + p[None, :],
            mask=tmask[:, None] & pmask[None, :],
            other=0.0,
        )
        Bm = tl.load(B_ptr + bc_off, mask=bc_mask, other=0.0)
        if SAVE:
            tl.store(
                states_ptr + (row * NC + c) * P * N + pn_off,
                state.to(states_ptr.dtype.element_ty),
                mask=pn_mask,
            )
        if ((c + 1) * Q > out_start) & (out_start < T):
            Cm = tl.load(C_ptr + bc_off, mask=bc_mask, other=0.0)
            scores = _dot(Cm, tl.trans(Bm), PREC, DOT_F32)  # [Q(l), Q(s)]
            decay = tl.exp(tl.where(causal, acs[:, None] - acs[None, :], float("-inf")))
            weights = (scores * decay * dt[None, :]).to(xm.dtype)
            y = _dot(weights, xm, PREC, DOT_F32)
            y_state = _dot(Cm, tl.trans(state.to(Cm.dtype)), PREC, DOT_F32)
            y += tl.exp(acs)[:, None] * y_state
            # D x always (D = 0 when the caller has none): without this term, Triton 3.6's
            # pipelined bf16 build of this loop produced wrong outputs on the H200 (ops.py).
            y += tl.load(D_ptr + h).to(tl.float32) * xm.to(tl.float32)
            tl.store(
                y_ptr + ((b * T_out + t[:, None] - out_start) * H + h) * P + p[None, :],
                y.to(y_ptr.dtype.element_ty),
                mask=(tmask & (t >= out_start))[:, None] & pmask[None, :],
            )
        xw = (xm.to(tl.float32) * (tl.exp(total - acs) * dt)[:, None]).to(Bm.dtype)
        state = state * tl.exp(total) + _dot(tl.trans(xw), Bm, PREC, DOT_F32)
    if s == NSEG - 1:
        tl.store(final_ptr + row * P * N + pn_off, state, mask=pn_mask)
