"""Functional entry points of the Triton SSD: scan, Memory Converter, TransMamba-shaped call.

Shape legend: B batch, T tokens (L for a converter prefix), H heads, P head dim, G groups,
N state dim. ``dt`` is already softplus-ed; states are fp32; ``y`` has the dtype of ``x``.
``tuning`` (a :class:`~zoo_plugins.triton_ssd.tuning.Tuning`) sets launch knobs; None = defaults.
``recompute_states``: when a backward will run, keep only the inputs and rebuild the
per-chunk states in the backward (one extra state walk) instead of saving them
[B, H, T / chunk_size, P, N] from the forward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from zoo_plugins.triton_ssd.ops import scan
from zoo_plugins.triton_ssd.tuning import Tuning

DEFAULT_CHUNK_SIZE = 64


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _args(tuning: Tuning | None) -> list[int] | None:
    return tuning.to_args() if tuning is not None else None


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size < 16 or chunk_size & (chunk_size - 1):
        raise ValueError(f"chunk_size must be a power of two >= 16, got {chunk_size}")


def ssd(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
    return_final_state: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    tuning: Tuning | None = None,
    recompute_states: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """SSD scan: x [B,T,H,P], dt [B,T,H], A [H], B/C [B,T,G,N], D [H], initial_state [B,H,P,N]
    -> y [B,T,H,P] (and final_state [B,H,P,N] fp32)."""
    _check_chunk_size(chunk_size)
    save = _needs_grad(x, dt, A, B, C, D, initial_state) and not recompute_states
    y, final_state, _ = scan(x, dt, A, B, C, D, initial_state, 0, chunk_size, save, _args(tuning))
    return (y, final_state) if return_final_state else y


def converter(
    k: Tensor,
    v: Tensor,
    dt: Tensor,
    A: Tensor,
    *,
    initial_state: Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    tuning: Tuning | None = None,
    recompute_states: bool = False,
) -> Tensor:
    """Memory Converter: the state after the prefix, by the chunk-state pass alone.

    k [B,L,G,N] (= B), v [B,L,H,P] (= x), dt [B,L,H], A [H] -> state [B,H,P,N] fp32.
    No prefix outputs are computed (out_start = L).
    """
    _check_chunk_size(chunk_size)
    save = _needs_grad(k, v, dt, A, initial_state) and not recompute_states
    _, state, _ = scan(v, dt, A, k, k, None, initial_state, v.shape[1], chunk_size, save, _args(tuning))
    return state


def transmamba_ssd(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    transpoint: int,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
    return_final_state: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    tuning: Tuning | None = None,
    recompute_states: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Converter over tokens [0, transpoint) + SSD scan over [transpoint, T), in one op.

    Inputs cover the whole sequence (x [B,T,H,P], dt [B,T,H], B/C [B,T,G,N]); returns the
    suffix outputs y [B, T - transpoint, H, P] (and the final state). The prefix's state
    never leaves the device and no prefix outputs are computed; this equals
    ``ssd(x[:, P:], ..., initial_state=converter(B[:, :P], x[:, :P], dt[:, :P], A))``.
    """
    _check_chunk_size(chunk_size)
    # Messages without closures, so that dynamo can keep a symbolic transpoint.
    torch._check(transpoint >= 0, lambda: "transpoint must be >= 0")
    torch._check(transpoint <= x.shape[1], lambda: "transpoint must be <= the sequence length")
    save = _needs_grad(x, dt, A, B, C, D, initial_state) and not recompute_states
    y, final_state, _ = scan(x, dt, A, B, C, D, initial_state, transpoint, chunk_size, save, _args(tuning))
    return (y, final_state) if return_final_state else y
