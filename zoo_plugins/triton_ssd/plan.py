"""Launch planning of the Triton SSD: how one call is cut and launched (host side only).

Shape legend as in :mod:`zoo_plugins.triton_ssd.kernels`. Everything here is a function of
sizes, dtype, device and a :class:`~zoo_plugins.triton_ssd.tuning.Tuning`; nothing launches.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

import torch
from torch import Tensor

from zoo.backends.base import triton_interpreting
from zoo_plugins.triton_ssd.tuning import Tuning

# State pass over segments: elements of a [P*N] state per program, slots per serial step.
PASS_BLOCK = 128
PASS_CHUNKS = 8
PROGRAMS_PER_SM = 4  # the default of Tuning.programs_per_sm (see its docstring)
# fp32 tiles of a 128-token chunk do not fit in shared memory (the dx kernel needs 245 KB at
# one stage); the chunk size changes no result, so fp32 on a GPU uses at most 64.
FP32_MAX_CHUNK = 64
# The kernels compute their offsets in int32 (int64 offsets cost registers, and registers
# are what bounds the walking kernels). A launch therefore covers whole batch rows whose
# largest tensor, indexed from the slice's base pointer, stays within int32; longer calls
# are cut into batch slices, each launched as its own scan (rows are independent).
INT32_LIMIT = 2**31 - 1


def cdiv(a: int, b: int) -> int:
    """ceil(a / b); works on SymInts too (the fake kernels use it for dynamic T)."""
    return (a + b - 1) // b


def _next_pow2(value: int, floor: int = 16) -> int:
    return max(floor, 1 << (max(value, 1) - 1).bit_length())


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 inputs get exact fp32 products (tf32 would miss fp32 tolerances).
    return "ieee" if dtype == torch.float32 else "tf32"


def _num_warps(chunk_size: int) -> int:
    return 8 if chunk_size >= 128 else 4


def launch_options(warps: int, stages: int, maxnreg: int | None) -> dict[str, int]:
    launch = dict(num_warps=warps, num_stages=stages)
    if maxnreg is not None and not triton_interpreting():
        launch["maxnreg"] = maxnreg
    return launch


@functools.cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def programs_per_sm(tuning: Tuning) -> int:
    return int(tuning.programs_per_sm or PROGRAMS_PER_SM)


def _target_programs(device: torch.device, tuning: Tuning) -> tuple[int, int]:
    """(processors, programs wanted) on this device."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return _sm_count(index), _sm_count(index) * programs_per_sm(tuning)
    return 64, 128  # the interpreter: its small tests get several segments, so every path runs


def segments(n_chunks: int, rows: int, device: torch.device, tuning: Tuning) -> tuple[int, int]:
    """(chunks per segment, number of segments): enough programs to fill the device, and a
    single segment when the rows alone do (each extra segment costs a pass of its own)."""
    if n_chunks == 0 or rows == 0:
        return max(n_chunks, 1), 1
    per_segment = tuning.chunks_per_segment
    if not per_segment:
        processors, wanted_programs = _target_programs(device, tuning)
        wanted = 1 if rows >= processors else max(1, min(n_chunks, cdiv(wanted_programs, rows)))
        per_segment = cdiv(n_chunks, wanted)
    return per_segment, cdiv(n_chunks, per_segment)


def stages(dtype: torch.dtype, tuning: Tuning) -> int:
    # fp32 is the exactness dtype, run without software pipelining: with three stages the
    # fp32 forward's outputs were wrong on the H200 (rel. error 7e-2, states right; Triton
    # 3.6), and its tiles need more shared memory than the 227 KB an SM has.
    return 1 if dtype == torch.float32 else int(tuning.stages or 3)


def effective_chunk(chunk_size: int, x: Tensor) -> int:
    if x.dtype == torch.float32 and x.device.type == "cuda":
        return min(chunk_size, FP32_MAX_CHUNK)
    return chunk_size


def saved_dtype(x: Tensor) -> torch.dtype:
    """dtype of the per-chunk states saved for the backward: that of x (bf16 has fp32's
    range), except fp16, whose 65504 ceiling a long-context state can pass: fp32 then."""
    return torch.float32 if x.dtype == torch.float16 else x.dtype


def chunk_launch(dtype: torch.dtype, chunk_size: int, tuning: Tuning) -> dict[str, int]:
    """Launch options of the backward's chunk-parallel kernels (dB/dC and dx).

    16-bit, chunks of at most 64: 4 warps. The sweep on the H200 (docs/benchmarks.md)
    measured 4 against 8 warps at 7.02 vs 9.31 ms fwd+bwd (B1 T64K) and 1.72 vs 2.29 ms
    (B8 T2K), but 1.72 vs 1.29 ms at B1 T8K (an outlier that other measurements
    contradict); the best geometric mean of the configurations tried. Chunks of 128 keep 8
    warps (at 4 their tiles spill 2.6-3 KB per thread: ``kernel_resources.py
    --chunk-warps 4``). fp32 keeps the configuration its GPU parity was checked with: 8
    warps, unpipelined.
    """
    if dtype == torch.float32:
        return launch_options(int(tuning.chunk_warps or 8), stages(dtype, tuning), tuning.chunk_maxnreg)
    chunk_stages = int(tuning.chunk_stages or stages(dtype, tuning))
    warps = int(tuning.chunk_warps or (4 if chunk_size <= 64 else 8))
    return launch_options(warps, chunk_stages, tuning.chunk_maxnreg)


class Walk(NamedTuple):
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


def walk(x: Tensor, n_groups: int, state_dim: int, chunk_size: int, n_chunks: int, tuning: Tuning) -> Walk:
    # The plan depends on sizes, dtype, device and the tuning only: worked out once per
    # combination (host time counts at B=1, where the GPU waits on it; benchmarks/host_overhead.py).
    return _plan(
        tuple(x.shape), x.dtype, x.device, n_groups, state_dim, chunk_size, n_chunks, tuning, triton_interpreting()
    )


@functools.lru_cache(maxsize=256)
def _plan(
    shape: tuple,
    dtype: torch.dtype,
    device: torch.device,
    n_groups: int,
    state_dim: int,
    chunk_size: int,
    n_chunks: int,
    tuning: Tuning,
    interpreting: bool,
) -> Walk:
    batch, seq_len, n_heads, head_dim = shape
    per_segment, n_segments = segments(n_chunks, batch * n_heads, device, tuning)
    meta = dict(
        Q=chunk_size,
        BP=_next_pow2(head_dim),
        BN=_next_pow2(state_dim),
        PREC=_dot_precision(dtype),
        DOT_F32=interpreting,
    )
    launch = launch_options(int(tuning.warps or _num_warps(chunk_size)), stages(dtype, tuning), tuning.maxnreg)
    return Walk(  # read-only views: every call of this shape shares the plan
        n_segments=n_segments,
        shape=(seq_len, n_heads, n_groups, n_heads // n_groups, head_dim, state_dim, n_chunks, per_segment),
        meta=MappingProxyType(meta),
        launch=MappingProxyType(launch),
    )


def batch_slices(
    x: Tensor, n_groups: int, state_dim: int, chunk_size: int, saved_states: bool
) -> list[tuple[int, int]]:
    """[start, stop) batch slices whose offsets fit in int32; a clear error if one row does not."""
    batch, seq_len, n_heads, head_dim = x.shape
    n_chunks = cdiv(seq_len, chunk_size)
    padded = n_chunks * chunk_size  # offsets are formed for every token of the last chunk
    per_row = max(padded * n_heads * head_dim, padded * n_groups * state_dim, padded * n_heads)
    if saved_states:  # the per-chunk states and their gradients, [B, H, nc, P, N]
        per_row = max(per_row, n_heads * n_chunks * head_dim * state_dim)
    limit = INT32_LIMIT
    if per_row > limit:
        raise ValueError(
            f"Triton SSD: one batch row spans {per_row:,} elements (T={seq_len}, heads={n_heads}, "
            f"head_dim={head_dim}, groups={n_groups}, state_dim={state_dim}, chunk_size={chunk_size}"
            f"{', with saved chunk states' if saved_states else ''}), over the {limit:,} its kernels "
            "index in int32. Use shorter sequences, a larger chunk_size (fewer saved states), or the "
            "'chunked' ssm backend."
        )
    rows = max(1, limit // max(per_row, 1))
    return [(start, min(start + rows, batch)) for start in range(0, batch, rows)] or [(0, 0)]
