"""The Triton SSD as ``torch.library`` custom ops, so compiled models keep ``fullgraph=True``.

Shape legend as in :mod:`zoo_plugins.triton_ssd.kernels`. Two ops:

- ``zoo_triton_ssd::ssd_fwd(x, dt, A, B, C, D?, initial_state?, out_start, chunk_size,
  save_states) -> (y [B, T - out_start, H, P], final_state [B,H,P,N] fp32,
  states [B,H,nc,P,N])``: ``states`` are the chunks' entering states in the dtype of x (fp32 when x is fp16),
  saved for the backward (empty unless save_states).
  ``out_start`` is the first token whose output is computed: 0 for a plain scan, the
  TransPoint for the fused converter + suffix scan, T for the converter alone.
- ``zoo_triton_ssd::ssd_bwd(...)`` -> gradients of x, dt, A, B, C, D, initial_state.

The autograd formula registered on ``ssd_fwd`` calls ``ssd_bwd``. ``scan`` is what the
public functions call: the op under torch.compile (dynamo keeps it whole), and eagerly
``_EagerSSD``, an ``autograd.Function`` over the same implementations (``_fwd_impl``,
``_bwd_impl``) that skips the custom-op dispatch, host time a B=1 step waits on. The kernels
module is imported inside the implementations only (see the package docstring for why).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

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


# State pass over segments: elements of a [P*N] state per program, slots per serial step.
_PASS_BLOCK = 128
_PASS_CHUNKS = 8

# Launch knobs. A walking kernel runs one program per (batch, head, segment of chunks).
# When there are fewer (batch, head) rows than SMs, the chunks are cut into segments so that
# there are about ``programs_per_sm`` programs per SM (default 4: benchmarks/gpu_ssd.py --sweep
# measured it best at B=1, T=64K, H=48 on an H200; docs/benchmarks.md). ``chunks_per_segment`` forces
# a segment length (tests use it to cover one and several segments); ``warps`` overrides
# the walking kernels' warp count, ``stages`` the pipeline stages of 16-bit runs (fewer stages
# spill less: kernel_resources.py). ``chunk_warps`` / ``chunk_stages`` are those of the
# backward's chunk-parallel kernels (dB/dC and dx). ``maxnreg`` / ``chunk_maxnreg`` cap the
# registers per thread (ptxas .maxnreg): at 8 warps, 128 lets two programs share an SM at the
# price of spills. None = the default. ``set_tuning`` changes them with a check.
_PROGRAMS_PER_SM = 4
_WARP_KNOBS = ("warps", "chunk_warps")
TUNING: dict[str, int | None] = {
    "programs_per_sm": None,
    "chunks_per_segment": None,
    "warps": None,
    "stages": None,
    "chunk_warps": None,
    "chunk_stages": None,
    "maxnreg": None,
    "chunk_maxnreg": None,
}


def set_tuning(**knobs: int | None) -> dict[str, int | None]:
    """Set launch knobs of :data:`TUNING` (None restores a default); returns the old values.

    >>> old = set_tuning(chunk_warps=4)
    >>> _ = set_tuning(**old)
    """
    unknown = sorted(set(knobs) - set(TUNING))
    if unknown:
        raise KeyError(f"unknown Triton SSD tuning knob(s) {unknown}; known: {sorted(TUNING)}")
    for name, value in knobs.items():
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"tuning knob {name}={value!r}: expected a positive int or None")
        if name in _WARP_KNOBS and value & (value - 1):
            raise ValueError(f"tuning knob {name}={value}: a warp count must be a power of two (1, 2, 4, 8, 16)")
    old = {name: TUNING[name] for name in knobs}
    TUNING.update(knobs)
    return old


def parse_tuning(text: str) -> dict[str, int | None]:
    """``"chunk_warps=4,stages=2"`` -> {"chunk_warps": 4, "stages": 2} (``none`` -> None)."""
    knobs: dict[str, int | None] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"tuning {item!r}: expected NAME=VALUE, e.g. chunk_warps=4")
        name, value = name.strip(), value.strip()
        if value.lower() == "none":
            knobs[name] = None
        elif value.isdigit():
            knobs[name] = int(value)
        else:
            raise ValueError(f"tuning {name}={value!r}: expected a positive integer or none")
    return knobs


def _launch(warps: int, stages: int, maxnreg: int | None) -> dict[str, int]:
    launch = dict(num_warps=warps, num_stages=stages)
    if maxnreg is not None and not _interpreting():
        launch["maxnreg"] = maxnreg
    return launch


@functools.cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _programs_per_sm() -> int:
    return int(TUNING["programs_per_sm"] or _PROGRAMS_PER_SM)


def _target_programs(device: torch.device) -> tuple[int, int]:
    """(processors, programs wanted) on this device."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return _sm_count(index), _sm_count(index) * _programs_per_sm()
    return 64, 128  # the interpreter: its small tests get several segments, so every path runs


def _segments(n_chunks: int, rows: int, device: torch.device) -> tuple[int, int]:
    """(chunks per segment, number of segments): enough programs to fill the device, and a
    single segment when the rows alone do (each extra segment costs a pass of its own)."""
    if n_chunks == 0 or rows == 0:
        return max(n_chunks, 1), 1
    per_segment = TUNING["chunks_per_segment"]
    if not per_segment:
        processors, wanted_programs = _target_programs(device)
        wanted = 1 if rows >= processors else max(1, min(n_chunks, _cdiv(wanted_programs, rows)))
        per_segment = _cdiv(n_chunks, wanted)
    return per_segment, _cdiv(n_chunks, per_segment)


def _stages(dtype: torch.dtype) -> int:
    # fp32 is the exactness dtype, run without software pipelining: with three stages the
    # fp32 forward's outputs were wrong on the H200 (rel. error 7e-2, states right; Triton
    # 3.6), and its tiles need more shared memory than the 227 KB an SM has.
    return 1 if dtype == torch.float32 else int(TUNING["stages"] or 3)


# fp32 tiles of a 128-token chunk do not fit in shared memory (the dx kernel needs 245 KB at
# one stage); the chunk size changes no result, so fp32 on a GPU uses at most 64.
_FP32_MAX_CHUNK = 64


def _chunk(chunk_size: int, x: Tensor) -> int:
    if x.dtype == torch.float32 and x.device.type == "cuda":
        return min(chunk_size, _FP32_MAX_CHUNK)
    return chunk_size


def _saved(x: Tensor) -> torch.dtype:
    """dtype of the per-chunk states saved for the backward: that of x (bf16 has fp32's
    range), except fp16, whose 65504 ceiling a long-context state can pass: fp32 then."""
    return torch.float32 if x.dtype == torch.float16 else x.dtype


def _chunk_launch(dtype: torch.dtype, chunk_size: int) -> dict[str, int]:
    """Launch options of the backward's chunk-parallel kernels (dB/dC and dx).

    16-bit, chunks of at most 64: 4 warps. The 2026-11-29 11:01 sweep on the H200
    (docs/benchmarks.md) measured 4 against 8 warps at 7.02 vs 9.31 ms fwd+bwd (B1 T64K) and
    1.72 vs 2.29 ms (B8 T2K), but 1.72 vs 1.29 ms at B1 T8K (an outlier that other
    measurements contradict; to be re-measured); the best geometric mean of the
    configurations tried. Chunks of 128 keep 8 warps (at 4 their tiles spill 2.6-3 KB per
    thread: ``kernel_resources.py --chunk-warps 4``). fp32 keeps the configuration its GPU
    parity was checked with: 8 warps, unpipelined.
    """
    if dtype == torch.float32:
        return _launch(int(TUNING["chunk_warps"] or 8), _stages(dtype), TUNING["chunk_maxnreg"])
    stages = int(TUNING["chunk_stages"] or _stages(dtype))
    warps = int(TUNING["chunk_warps"] or (4 if chunk_size <= 64 else 8))
    return _launch(warps, stages, TUNING["chunk_maxnreg"])


class _Walk(NamedTuple):
    """How one scan is cut and launched (shared by the forward and the backward)."""

    n_segments: int
    shape: tuple  # sizes the walking kernels take: T, H, G, R, P, N, nc, chunks per segment
    meta: Mapping  # constexprs of every kernel: Q, BP, BN, PREC, DOT_F32
    launch: Mapping  # num_warps / num_stages (/ maxnreg) of the walking kernels

    @property
    def per_segment(self) -> int:
        return self.shape[-1]

    @property
    def slots(self) -> int:
        """Rows of the per-segment buffers (at least 1, so that they can be allocated)."""
        return max(self.n_segments - 1, 1)

    def segment_buffers(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """fp32 buffers of the pass over segments: one [P, N] state (or gradient) and one
        log-decay per segment slot, and the [P, N] state at the far end of the pass."""
        batch, _, n_heads, head_dim = x.shape
        state_dim = self.shape[5]
        f32 = dict(device=x.device, dtype=torch.float32)
        return (
            torch.empty(batch, n_heads, self.slots, head_dim, state_dim, **f32),
            torch.empty(batch, n_heads, self.slots, **f32),
            torch.empty(batch, n_heads, head_dim, state_dim, **f32),
        )


def _walk(x: Tensor, n_groups: int, state_dim: int, chunk_size: int, n_chunks: int) -> _Walk:
    # The plan depends on sizes, dtype, device and the knobs only: worked out once per
    # combination (host time counts at B=1, where the GPU waits on it; benchmarks/host_overhead.py).
    return _plan(tuple(x.shape), x.dtype, x.device, n_groups, state_dim, chunk_size, n_chunks,
                 tuple(sorted(TUNING.items())), _interpreting())


@functools.lru_cache(maxsize=256)
def _plan(shape: tuple, dtype: torch.dtype, device: torch.device, n_groups: int, state_dim: int, chunk_size: int,
          n_chunks: int, _knobs: tuple, interpreting: bool) -> _Walk:
    batch, seq_len, n_heads, head_dim = shape
    per_segment, n_segments = _segments(n_chunks, batch * n_heads, device)
    meta = dict(
        Q=chunk_size,
        BP=_next_pow2(head_dim),
        BN=_next_pow2(state_dim),
        PREC=_dot_precision(dtype),
        DOT_F32=interpreting,
    )
    launch = _launch(int(TUNING["warps"] or _num_warps(chunk_size)), _stages(dtype), TUNING["maxnreg"])
    return _Walk(  # read-only views: every call of this shape shares the plan
        n_segments=n_segments,
        shape=(seq_len, n_heads, n_groups, n_heads // n_groups, head_dim, state_dim, n_chunks, per_segment),
        meta=MappingProxyType(meta),
        launch=MappingProxyType(launch),
    )


def _chain_segments(
    own: Tensor, totals: Tensor, start: Tensor | None, end: Tensor, walk: _Walk, *, has_own: bool, reverse: bool
) -> None:
    """The sequential pass over segments (``kernels._state_pass``): ``own`` slots become the
    states (forward) or state gradients (reverse) at the segment boundaries, ``end`` the one
    entering the last segment (forward) or leaving the first (reverse)."""
    from zoo_plugins.triton_ssd import kernels

    rows, state_numel = own.shape[0] * own.shape[1], own.shape[3] * own.shape[4]
    kernels._state_pass[(rows, _cdiv(state_numel, _PASS_BLOCK))](
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
        BLOCK=_PASS_BLOCK,
        CB=_PASS_CHUNKS,
        num_warps=4,
    )


# The kernels compute their offsets in int32 (int64 offsets cost registers, and registers
# are what bounds the walking kernels). A launch therefore covers whole batch rows whose
# largest tensor, indexed from the slice's base pointer, stays within int32; longer calls
# are cut into batch slices, each launched as its own scan (rows are independent).
_INT32_LIMIT = 2**31 - 1


def _batch_slices(x: Tensor, n_groups: int, state_dim: int, chunk_size: int, saved_states: bool
                  ) -> list[tuple[int, int]]:
    """[start, stop) batch slices whose offsets fit in int32; a clear error if one row does not."""
    batch, seq_len, n_heads, head_dim = x.shape
    n_chunks = _cdiv(seq_len, chunk_size)
    padded = n_chunks * chunk_size  # offsets are formed for every token of the last chunk
    per_row = max(padded * n_heads * head_dim, padded * n_groups * state_dim, padded * n_heads)
    if saved_states:  # the per-chunk states and their gradients, [B, H, nc, P, N]
        per_row = max(per_row, n_heads * n_chunks * head_dim * state_dim)
    if per_row > _INT32_LIMIT:
        raise ValueError(
            f"Triton SSD: one batch row spans {per_row:,} elements (T={seq_len}, heads={n_heads}, "
            f"head_dim={head_dim}, groups={n_groups}, state_dim={state_dim}, chunk_size={chunk_size}"
            f"{', with saved chunk states' if saved_states else ''}), over the {_INT32_LIMIT:,} its kernels "
            "index in int32. Use shorter sequences, a larger chunk_size (fewer saved states), or the "
            "'chunked' ssm backend."
        )
    rows = max(1, _INT32_LIMIT // max(per_row, 1))
    return [(start, min(start + rows, batch)) for start in range(0, batch, rows)] or [(0, 0)]


def _fwd_impl(
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
) -> tuple[Tensor, Tensor, Tensor]:
    x, dt, A, B, C = (v.contiguous() for v in (x, dt, A, B, C))
    batch, seq_len, n_heads, head_dim = x.shape
    n_groups, state_dim = B.shape[2], B.shape[3]
    chunk_size = _chunk(chunk_size, x)
    n_chunks = _cdiv(seq_len, chunk_size)
    rows = batch * n_heads
    f32 = dict(device=x.device, dtype=torch.float32)
    y = torch.empty(batch, seq_len - out_start, n_heads, head_dim, device=x.device, dtype=x.dtype)
    final_state = torch.empty(batch, n_heads, head_dim, state_dim, **f32)
    if save_states:
        states = torch.empty(batch, n_heads, n_chunks, head_dim, state_dim, device=x.device, dtype=_saved(x))
    else:
        states = torch.empty(0, device=x.device, dtype=_saved(x))
    init = initial_state.contiguous() if initial_state is not None else None
    if n_chunks == 0 or rows == 0:  # nothing to scan: T = 0 or an empty batch
        return y, final_state.copy_(init) if init is not None else final_state.zero_(), states
    D = _skip_weights(D, A)
    slices = _batch_slices(x, n_groups, state_dim, chunk_size, save_states)
    if len(slices) == 1:  # the usual case: no views to make (host time counts at B=1)
        _fwd_rows(x, dt, A, B, C, D, init, out_start, chunk_size, save_states, y, final_state, states)
        return y, final_state, states
    for a, b in slices:
        _fwd_rows(
            x[a:b], dt[a:b], A, B[a:b], C[a:b], D, init[a:b] if init is not None else None, out_start, chunk_size,
            save_states, y[a:b], final_state[a:b], states[a:b] if save_states else states,
        )
    return y, final_state, states


def _skip_weights(D: Tensor | None, A: Tensor) -> Tensor:
    """D, or zeros when there is none. The kernels always add D x: on the H200 (Triton 3.6),
    the bf16 forward compiled without that term (a constexpr branch) and software-pipelined
    gave wrong outputs (relative error ~1 against the fp64 reference at T = 64 to 8192, H = 48,
    P = 64, N = 128, chunk 64; correct with D, at one stage, and in fp32), found 2026-11-29."""
    return D if D is not None else torch.zeros(A.shape[0], device=A.device, dtype=torch.float32)


def _fwd_rows(x, dt, A, B, C, D, init, out_start, chunk_size, save_states, y, final_state, states) -> None:
    """The forward's launches over a batch slice (offsets within int32), into y / final_state /
    states; D is never None here (``_skip_weights``)."""
    from zoo_plugins.triton_ssd import kernels

    batch, _, n_heads, _ = x.shape
    n_groups, state_dim = B.shape[2], B.shape[3]
    n_chunks = _cdiv(x.shape[1], chunk_size)
    rows = batch * n_heads
    walk = _walk(x, n_groups, state_dim, chunk_size, n_chunks)
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


# The ops are the implementations themselves (schema from their signatures): the graph
# records them under torch.compile; eager calls go through ``_EagerSSD`` (see ``scan``).
ssd_fwd = torch.library.custom_op(f"{_LIB}::ssd_fwd", mutates_args=())(_fwd_impl)


@ssd_fwd.register_fake
def _ssd_fwd_fake(x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states):
    batch, seq_len, n_heads, head_dim = x.shape
    state_dim = B.shape[3]
    chunk_size = _chunk(chunk_size, x)
    n_chunks = _cdiv(seq_len, chunk_size)
    y = x.new_empty(batch, seq_len - out_start, n_heads, head_dim)
    final_state = x.new_empty(batch, n_heads, head_dim, state_dim, dtype=torch.float32)
    if save_states:
        states = x.new_empty(batch, n_heads, n_chunks, head_dim, state_dim, dtype=_saved(x))
    else:
        states = x.new_empty(0, dtype=_saved(x))
    return y, final_state, states


def _bwd_impl(
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
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    x, dt, A, B, C = (v.contiguous() for v in (x, dt, A, B, C))
    batch, seq_len, n_heads, head_dim = x.shape
    n_groups, state_dim = B.shape[2], B.shape[3]
    chunk_size = _chunk(chunk_size, x)
    n_chunks = _cdiv(seq_len, chunk_size)
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
    dstates = torch.empty(batch, n_heads, n_chunks, head_dim, state_dim, device=x.device, dtype=_saved(x))
    dA_part = torch.empty(batch, n_chunks, n_heads, **f32)
    dD_part = torch.empty(batch, n_chunks, n_heads, **f32)
    dy_or_x = dy.contiguous() if has_dy else x
    outs = (dx, ddt, dB, dC, d_init, dstates, dA_part, dD_part)
    skip = _skip_weights(D, A)
    slices = _batch_slices(x, n_groups, state_dim, chunk_size, True)
    if len(slices) == 1:
        _bwd_rows(dy_or_x, has_dy, dfinal, x, dt, A, B, C, skip, states, out_start, chunk_size, outs)
    else:
        for a, b in slices:
            _bwd_rows(
                dy_or_x[a:b], has_dy, dfinal[a:b] if dfinal is not None else None, x[a:b], dt[a:b], A, B[a:b],
                C[a:b], skip, states[a:b], out_start, chunk_size, tuple(out[a:b] for out in outs),
            )
    dA = dA_part.sum(dim=(0, 1)).to(A.dtype)
    if D is not None:
        dD = dD_part.sum(dim=(0, 1)).to(D.dtype) if has_dy else torch.zeros_like(D)
    else:
        dD = A.new_zeros(n_heads)
    return dx, ddt, dA, dB, dC, dD, d_init


def _bwd_rows(dy_or_x, has_dy, dfinal, x, dt, A, B, C, D, states, out_start, chunk_size, outs) -> None:
    """The backward's launches over a batch slice (offsets within int32), into ``outs``; D is
    never None here (``_skip_weights``)."""
    from zoo_plugins.triton_ssd import kernels_bwd

    dx, ddt, dB, dC, d_init, dstates, dA_part, dD_part = outs
    batch, _, n_heads, _ = x.shape
    n_groups, state_dim = B.shape[2], B.shape[3]
    n_chunks = _cdiv(x.shape[1], chunk_size)
    rows = batch * n_heads
    walk = _walk(x, n_groups, state_dim, chunk_size, n_chunks)
    seg = d_init
    first = dfinal
    if walk.n_segments > 1:
        seg, seg_total, first = walk.segment_buffers(x)
        kernels_bwd._seg_dstate_rev[(rows, walk.n_segments - 1)](
            dy_or_x, dt, A, C, seg, seg_total, *walk.shape, walk.slots, out_start, HAS_DY=has_dy,
            **walk.launch, **walk.meta,
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
    chunk_launch = _chunk_launch(x.dtype, chunk_size)
    # dB/dC hold two [Q, N] fp32 accumulators: halving N per program avoids spills.
    block_n_dbc = max(16, walk.meta["BN"] // 2)
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
        **chunk_launch,
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
        **chunk_launch,
        **walk.meta,
    )


ssd_bwd = torch.library.custom_op(f"{_LIB}::ssd_bwd", mutates_args=())(_bwd_impl)


@ssd_bwd.register_fake
def _ssd_bwd_fake(dy, dfinal_state, x, dt, A, B, C, D, states, out_start, chunk_size):
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
    _, _, states = output
    ctx.save_for_backward(x, dt, A, B, C, D, states)
    ctx.out_start = out_start
    ctx.chunk_size = chunk_size
    ctx.save_states = save_states
    ctx.has_D = D is not None
    ctx.has_init = initial_state is not None
    ctx.init_dtype = initial_state.dtype if initial_state is not None else None
    # Outputs that got no gradient arrive as None instead of zeros: autograd would otherwise
    # fill a zero gradient for the saved ``states`` output (as large as the chunk states,
    # 805 MB at B=1, T=64K in bf16) and for an unused final state on every backward.
    # ssd_bwd takes None for both dy and dfinal_state.
    ctx.set_materialize_grads(False)


def _gradients(ctx, dy, dfinal_state, bwd) -> tuple:
    x, dt, A, B, C, D, states = ctx.saved_tensors
    if dy is not None:
        dy = dy.contiguous()  # traced under torch.compile: fused into dy's producer (see scan)
    if not ctx.save_states:
        raise RuntimeError("zoo_triton_ssd::ssd_fwd ran with save_states=False; it cannot be differentiated")
    dx, ddt, dA, dB, dC, dD, d_init = bwd(dy, dfinal_state, x, dt, A, B, C, D, states, ctx.out_start, ctx.chunk_size)
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


def _backward(ctx, dy, dfinal_state, _dstates):
    # the op, so that a compiled backward records it (opaque, with its fake kernel)
    return _gradients(ctx, dy, dfinal_state, ssd_bwd)


torch.library.register_autograd(f"{_LIB}::ssd_fwd", _backward, setup_context=_setup_context)


class _EagerSSD(torch.autograd.Function):
    """The ``ssd_fwd`` op and its autograd formula, without the custom-op machinery.

    Same implementation (``_fwd_impl`` / ``_bwd_impl``) and the same saved tensors; what it
    skips is host work: the dispatcher round trips and torch.library's Python autograd
    wrapper, which on the H200 host left the GPU idle for 0.3-1.3 ms of a B=1 fwd+bwd step
    (docs/benchmarks.md, 2026-11-29 12:36/12:44).
    """

    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states):
        output = _fwd_impl(x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states)
        _setup_context(ctx, (x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states), output)
        ctx.mark_non_differentiable(output[2])
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable  # like the op: no double backward
    def backward(ctx, dy, dfinal_state, _dstates):
        # compiled autograd traces this backward: it must see the op, not the kernels
        return _gradients(ctx, dy, dfinal_state, ssd_bwd if torch.compiler.is_compiling() else _bwd_impl)


def scan(
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
) -> tuple[Tensor, Tensor, Tensor]:
    """``ssd_fwd`` (arguments and outputs as the op's). Under torch.compile this is the
    custom op, which dynamo keeps whole (fake and autograd registrations); eagerly it is
    ``_EagerSSD``, the same kernels with less host work per call.

    The kernels read contiguous tensors. In a mixer, x, B and C are slices of one conv
    output; made contiguous here, outside the op, a compiled graph writes them from the
    conv's own kernel instead of copying them inside the op (forward and again in the
    backward, from the saved slices: six strided copies, 0.21 ms of a 4.1 ms transmamba
    fwd+bwd at T=8192 on the H200, docs/benchmarks.md 2026-11-29 14:10).
    """
    x, dt, A, B, C = (v.contiguous() for v in (x, dt, A, B, C))
    if _eager(x):
        return _EagerSSD.apply(x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states)
    return ssd_fwd(x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states)


def _eager(x: Tensor) -> bool:
    """True for a plain eager call: not under torch.compile, and no tracer involved (a
    tensor subclass such as FakeTensor, or a dispatch mode such as make_fx's), which
    need the op's fake kernel instead of the Triton launches."""
    return not torch.compiler.is_compiling() and type(x) is Tensor and _get_current_dispatch_mode() is None
