"""Triton kernels of the chunked SSD scan: the forward, and the state pass both directions use.

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

The backward is in :mod:`zoo_plugins.triton_ssd.kernels_bwd`; it runs ``_state_pass``
reversed. A program of the forward chunk kernels owns one (batch, group, chunk) and loops
over the R heads of the group, so the B/C tiles and the C B^T scores are loaded and formed
once per group.

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
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    states_ptr,
    totals_ptr,
    T,
    H,
    G,
    R,
    P,
    N,
    NC,
    Q: tl.constexpr,
    BP: tl.constexpr,
    BN: tl.constexpr,
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
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
        mask=tmask[:, None] & nmask[None, :],
        other=0.0,
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
            mask=tmask[:, None] & pmask[None, :],
            other=0.0,
        )
        xw = (xm.to(tl.float32) * weight[:, None]).to(Bm.dtype)
        state = _dot(tl.trans(xw), Bm, PREC, DOT_F32)  # [BP, BN]
        base = ((b * H + h) * NC + c) * P * N
        tl.store(
            states_ptr + base + p[:, None] * N + n[None, :],
            state,
            mask=pmask[:, None] & nmask[None, :],
        )
        tl.store(totals_ptr + (b * H + h) * NC + c, total)


@triton.jit
def _state_pass(
    states_ptr,
    totals_ptr,
    start_ptr,
    end_ptr,
    PN,
    NC,
    HAS_START: tl.constexpr,
    HAS_OWN: tl.constexpr,
    REVERSE: tl.constexpr,
    BLOCK: tl.constexpr,
    CB: tl.constexpr,
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
    x_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    states_ptr,
    y_ptr,
    T,
    H,
    G,
    R,
    P,
    N,
    NC,
    out_start,
    first_chunk,
    HAS_D: tl.constexpr,
    Q: tl.constexpr,
    BP: tl.constexpr,
    BN: tl.constexpr,
    PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
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
            mask=tmask[:, None] & pmask[None, :],
            other=0.0,
        )
        weights = (scores * decay * dt[None, :]).to(xm.dtype)
        y = _dot(weights, xm, PREC, DOT_F32)
        base = ((b * H + h) * NC + c) * P * N
        h_in = tl.load(
            states_ptr + base + p[:, None] * N + n[None, :],
            mask=pmask[:, None] & nmask[None, :],
            other=0.0,
        )
        y_state = _dot(Cm, tl.trans(h_in.to(Cm.dtype)), PREC, DOT_F32)
        y += tl.exp(acs)[:, None] * y_state
        if HAS_D:
            y += tl.load(D_ptr + h).to(tl.float32) * xm.to(tl.float32)
        tl.store(
            y_ptr + ((b * T_out + t[:, None] - out_start) * H + h) * P + p[None, :],
            y.to(y_ptr.dtype.element_ty),
            mask=ymask,
        )
