"""Triton kernels of the fused causal depthwise conv (see :mod:`zoo_plugins.triton_ssd.conv`).

Imported lazily, inside the op bodies, so that ``TRITON_INTERPRET=1`` set by the tests'
conftest takes effect before any ``@triton.jit``.

Legend: B batch, T tokens, C channels, W taps. ``pre[t] = bias + sum_k w[k] x[t - (W-1) + k]``
(x = 0 before the sequence), ``out[t] = silu(pre[t])`` (or ``pre[t]``). A program owns one
[BT tokens, BC channels] tile of one batch row. The output channels are cut into up to three
contiguous tensors (e.g. x, B and C of a Mamba2 mixer), each written directly.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _pre(x_ptr, w_ptr, base, t, c, cmask, T, stride_t, W: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr):
    """Pre-activation conv (no bias) at rows t [BT] of channels c [BC], fp32."""
    acc = tl.zeros([BT, BC], dtype=tl.float32)
    for k in tl.static_range(W):
        src = t - (W - 1) + k
        m = (src >= 0) & (src < T)
        xv = tl.load(x_ptr + base + src[:, None] * stride_t + c[None, :], mask=m[:, None] & cmask[None, :], other=0.0)
        wk = tl.load(w_ptr + c * W + k, mask=cmask, other=0.0).to(tl.float32)
        acc += xv.to(tl.float32) * wk[None, :]
    return acc


@triton.jit
def _tile(T, C, BT: tl.constexpr, BC: tl.constexpr):
    """This program's batch row, token indices [BT] and channel indices [BC], with masks."""
    t = tl.program_id(0) * BT + tl.arange(0, BT)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    return tl.program_id(2), t, c, t < T, c < C


@triton.jit
def _segment_offsets(b, t, c, T, C, S0, S1):
    """Offsets into each of the three output tensors ([B, T, width] contiguous) and masks."""
    in0 = c < S0
    in1 = (c >= S0) & (c < S1)
    in2 = c >= S1
    off0 = (b * T + t[:, None]) * S0 + c[None, :]
    off1 = (b * T + t[:, None]) * (S1 - S0) + (c[None, :] - S0)
    off2 = (b * T + t[:, None]) * (C - S1) + (c[None, :] - S1)
    return in0, in1, in2, off0, off1, off2


@triton.jit
def _conv_fwd(
    x_ptr,
    w_ptr,
    bias_ptr,
    out0_ptr,
    out1_ptr,
    out2_ptr,
    T,
    C,
    S0,
    S1,
    stride_b,
    stride_t,
    W: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACT: tl.constexpr,
    BT: tl.constexpr,
    BC: tl.constexpr,
):
    b, t, c, tmask, cmask = _tile(T, C, BT, BC)
    acc = _pre(x_ptr, w_ptr, b * stride_b, t, c, cmask, T, stride_t, W, BT, BC)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + c, mask=cmask, other=0.0).to(tl.float32)[None, :]
    if ACT:
        acc = acc * tl.sigmoid(acc)
    in0, in1, in2, off0, off1, off2 = _segment_offsets(b, t, c, T, C, S0, S1)
    rows = tmask[:, None]
    out = acc.to(out0_ptr.dtype.element_ty)
    tl.store(out0_ptr + off0, out, mask=rows & (cmask & in0)[None, :])
    tl.store(out1_ptr + off1, out, mask=rows & (cmask & in1)[None, :])
    tl.store(out2_ptr + off2, out, mask=rows & (cmask & in2)[None, :])


@triton.jit
def _grad_at(
    g0_ptr,
    g1_ptr,
    g2_ptr,
    b,
    s,
    c,
    cmask,
    T,
    C,
    S0,
    S1,
    HAS_G0: tl.constexpr,
    HAS_G1: tl.constexpr,
    HAS_G2: tl.constexpr,
    BT: tl.constexpr,
    BC: tl.constexpr,
):
    """The output gradient at tokens s [BT] (zero past the end), gathered from the up to three
    output tensors, fp32 [BT, BC]."""
    in0, in1, in2, off0, off1, off2 = _segment_offsets(b, s, c, T, C, S0, S1)
    rows = (s < T)[:, None]
    g = tl.zeros([BT, BC], dtype=tl.float32)
    if HAS_G0:
        g += tl.load(g0_ptr + off0, mask=rows & (cmask & in0)[None, :], other=0.0).to(tl.float32)
    if HAS_G1:
        g += tl.load(g1_ptr + off1, mask=rows & (cmask & in1)[None, :], other=0.0).to(tl.float32)
    if HAS_G2:
        g += tl.load(g2_ptr + off2, mask=rows & (cmask & in2)[None, :], other=0.0).to(tl.float32)
    return g


@triton.jit
def _windows(x_ptr, base, s, c, cmask, k, kmask, T, stride_t, W: tl.constexpr):
    """x's causal windows of tokens s [BT]: [BT, WP taps, BC] fp32, x = 0 outside [0, T)."""
    src = s[:, None] - (W - 1) + k[None, :]
    m = (src >= 0) & (src < T) & kmask[None, :]
    return tl.load(
        x_ptr + base + src[:, :, None] * stride_t + c[None, None, :],
        mask=m[:, :, None] & cmask[None, None, :],
        other=0.0,
    ).to(tl.float32)


@triton.jit
def _d_pre(g, xs, w, bias, HAS_BIAS: tl.constexpr, ACT: tl.constexpr):
    """d pre = g * silu'(pre), pre recomputed from the windows (g itself without activation)."""
    if ACT:
        pre = tl.sum(xs * w[None, :, :], axis=1)
        if HAS_BIAS:
            pre += bias[None, :]
        sig = tl.sigmoid(pre)
        g = g * (sig + pre * sig * (1.0 - sig))
    return g


@triton.jit
def _conv_bwd_pre(
    x_ptr,
    w_ptr,
    bias_ptr,
    g0_ptr,
    g1_ptr,
    g2_ptr,
    out_ptr,
    dw_part_ptr,
    db_part_ptr,
    scratch_ptr,
    T,
    C,
    S0,
    S1,
    stride_b,
    stride_t,
    NTB,
    W: tl.constexpr,
    WP: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACT: tl.constexpr,
    HAS_G0: tl.constexpr,
    HAS_G1: tl.constexpr,
    HAS_G2: tl.constexpr,
    BT: tl.constexpr,
    BC: tl.constexpr,
    TILES: tl.constexpr,
    FUSED: tl.constexpr = False,
    STAGED: tl.constexpr = False,
):
    """d_pre = g * act'(pre) over TILES consecutive [BT, BC] tiles and their partial sums of
    dw [W, C] and db [C] (one row of the partials per program). ``out_ptr`` gets d_pre (fp32,
    [B, T, C]; ``_conv_bwd_dx`` then makes dx) or, with FUSED, dx itself in x's dtype.

    The taps are a third tile axis (WP = W rounded up to a power of two): x is read as
    [BT, WP, BC] shifted windows, pre is their weighted sum over the taps, and dw's
    products accumulate elementwise across the tiles, reduced over tokens once at the end
    (a reduction per tile and tap was what made this kernel slow). The pre-activation is
    recomputed from x, not saved.

    FUSED: dx[t] = sum_j d_pre[t + j] w[W-1-j] needs d_pre at W - 1 tokens past the tile, so
    the program recomputes d_pre there (x's windows and the output gradient, re-read through
    the cache) instead of writing d_pre in fp32 and reading it back W times. dw and db take
    d_pre at the tile's own tokens only, so every token counts once.

    STAGED: dx in the same kernel, with d_pre computed once per token: the tile's d_pre and
    the W - 1 tokens' past it (recomputed, as FUSED does, but only those) go to this
    program's own slot of ``scratch_ptr`` ([BT + WP, BC] fp32, rewritten by every tile, so it
    stays in cache), and dx reads them back shifted. A barrier orders the slot's writes
    before its reads, and its reads before the next tile's writes."""
    b = tl.program_id(2)
    c = tl.program_id(1) * BC + tl.arange(0, BC)
    cmask = c < C
    k = tl.arange(0, WP)
    kmask = k < W
    base = b * stride_b
    w = tl.load(w_ptr + c[None, :] * W + k[:, None], mask=kmask[:, None] & cmask[None, :], other=0.0).to(tl.float32)
    bias = tl.zeros([BC], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    dw = tl.zeros([BT, WP, BC], dtype=tl.float32)
    db = tl.zeros([BT, BC], dtype=tl.float32)
    if STAGED:
        lane_t = tl.arange(0, BT)
        lane_c = tl.arange(0, BC)
        slot = scratch_ptr + ((b * tl.num_programs(1) + tl.program_id(1)) * NTB + tl.program_id(0)) * ((BT + WP) * BC)
        # the taps reversed: dx[t] = sum_j d_pre[t + j] w[W-1-j]
        w_rev = tl.load(
            w_ptr + c[None, :] * W + (W - 1 - k)[:, None], mask=kmask[:, None] & cmask[None, :], other=0.0
        ).to(tl.float32)
    for i in range(TILES):
        t = (tl.program_id(0) * TILES + i) * BT + tl.arange(0, BT)
        rows = (b * T + t[:, None]) * C + c[None, :]
        tmask = (t < T)[:, None] & cmask[None, :]
        xs = _windows(x_ptr, base, t, c, cmask, k, kmask, T, stride_t, W)
        g = _grad_at(g0_ptr, g1_ptr, g2_ptr, b, t, c, cmask, T, C, S0, S1, HAS_G0, HAS_G1, HAS_G2, BT, BC)
        d = _d_pre(g, xs, w, bias, HAS_BIAS, ACT)
        dw += d[:, None, :] * xs
        db += d
        if FUSED:
            dx = d * tl.load(w_ptr + c * W + (W - 1), mask=cmask, other=0.0).to(tl.float32)[None, :]
            for j in tl.static_range(1, W):
                s = t + j
                gj = _grad_at(g0_ptr, g1_ptr, g2_ptr, b, s, c, cmask, T, C, S0, S1, HAS_G0, HAS_G1, HAS_G2, BT, BC)
                if ACT:
                    xj = _windows(x_ptr, base, s, c, cmask, k, kmask, T, stride_t, W)
                    gj = _d_pre(gj, xj, w, bias, HAS_BIAS, ACT)
                dx += gj * tl.load(w_ptr + c * W + (W - 1 - j), mask=cmask, other=0.0).to(tl.float32)[None, :]
            tl.store(out_ptr + rows, dx.to(out_ptr.dtype.element_ty), mask=tmask)
        elif STAGED:
            ahead = (tl.program_id(0) * TILES + i) * BT + BT + k  # the WP tokens past the tile
            g_ahead = _grad_at(g0_ptr, g1_ptr, g2_ptr, b, ahead, c, cmask, T, C, S0, S1, HAS_G0, HAS_G1, HAS_G2, WP, BC)
            x_ahead = _windows(x_ptr, base, ahead, c, cmask, k, kmask, T, stride_t, W)
            d_ahead = _d_pre(g_ahead, x_ahead, w, bias, HAS_BIAS, ACT)
            tl.store(slot + lane_t[:, None] * BC + lane_c[None, :], d)
            tl.store(slot + (BT + k)[:, None] * BC + lane_c[None, :], d_ahead)
            tl.debug_barrier()
            shifted = lane_t[:, None] + k[None, :]  # [BT, WP] slot rows t + j
            ds = tl.load(slot + shifted[:, :, None] * BC + lane_c[None, None, :])
            dx = tl.sum(ds * w_rev[None, :, :], axis=1)
            tl.store(out_ptr + rows, dx.to(out_ptr.dtype.element_ty), mask=tmask)
            tl.debug_barrier()
        else:
            tl.store(out_ptr + rows, d, mask=tmask)
    part = b * NTB + tl.program_id(0)
    tl.store(
        dw_part_ptr + (part * W + k[:, None]) * C + c[None, :], tl.sum(dw, axis=0), mask=kmask[:, None] & cmask[None, :]
    )
    if HAS_BIAS:
        tl.store(db_part_ptr + part * C + c, tl.sum(db, axis=0), mask=cmask)


@triton.jit
def _conv_bwd_dx(
    dpre_ptr,
    w_ptr,
    dx_ptr,
    T,
    C,
    W: tl.constexpr,
    BT: tl.constexpr,
    BC: tl.constexpr,
):
    """dx[t] = sum_j d_pre[t + j] w[W-1-j] (d_pre = 0 past the end)."""
    b, t, c, tmask, cmask = _tile(T, C, BT, BC)
    dx = tl.zeros([BT, BC], dtype=tl.float32)
    for j in tl.static_range(W):
        rows = t + j
        d = tl.load(
            dpre_ptr + (b * T + rows[:, None]) * C + c[None, :], mask=(rows < T)[:, None] & cmask[None, :], other=0.0
        )
        dx += d * tl.load(w_ptr + c * W + (W - 1 - j), mask=cmask, other=0.0).to(tl.float32)[None, :]
    tl.store(
        dx_ptr + (b * T + t[:, None]) * C + c[None, :],
        dx.to(dx_ptr.dtype.element_ty),
        mask=tmask[:, None] & cmask[None, :],
    )
