"""mamba-ssm's chunked SSD as a ``torch.library`` custom op.

mamba-ssm exposes ``mamba_chunk_scan_combined`` as a ``torch.autograd.Function`` whose
forward imports modules and launches Triton kernels from Python; dynamo cannot trace that
with ``fullgraph=True``. Wrapped as a custom op (with a fake implementation and an
autograd formula over mamba-ssm's own backward), compiled models treat it as one opaque
node, as they treat the zoo's own Triton SSD.

Shape legend: B batch, T tokens, H heads, P head dim, G groups, N state dim.
"""

from __future__ import annotations

import torch
from torch import Tensor

from zoo_plugins.mamba_ssm import loader


@torch.library.custom_op("zoo_mamba_ssm::chunk_scan", mutates_args=())
def chunk_scan(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    initial_state: Tensor | None,
    chunk_size: int,
) -> tuple[Tensor, Tensor]:
    """x [B,T,H,P], dt [B,T,H] (already softplus-ed), A [H], B/C [B,T,G,N], D [H],
    initial_state [B,H,P,N] -> (y [B,T,H,P], final_state [B,H,P,N] fp32)."""
    forward = loader.combined_module()._mamba_chunk_scan_combined_fwd
    y, *_, final_state = forward(x, dt, A, B, C, chunk_size, D=D, initial_states=initial_state)
    return y, final_state.float()


@chunk_scan.register_fake
def _(x, dt, A, B, C, D, initial_state, chunk_size):
    batch, _, n_heads, head_dim = x.shape
    return torch.empty_like(x), x.new_empty(batch, n_heads, head_dim, B.shape[-1], dtype=torch.float32)


@torch.library.custom_op("zoo_mamba_ssm::chunk_scan_bwd", mutates_args=())
def chunk_scan_bwd(
    dy: Tensor,
    dfinal_state: Tensor | None,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    initial_state: Tensor | None,
    y: Tensor,
    chunk_size: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients (dx, ddt, dA, dB, dC, dD, dinitial_state), each in its input's dtype; dD and
    dinitial_state are empty when there is no D or initial state (a custom op returns tensors)."""
    backward = loader.combined_module()._mamba_chunk_scan_combined_bwd
    dx, ddt, dA, dB, dC, dD, _dz, _ddt_bias, dinitial = backward(
        dy, x, dt, A, B, C, y, chunk_size, D=D, initial_states=initial_state, dfinal_states=dfinal_state
    )
    grads = [dx.to(x.dtype), ddt.to(dt.dtype), dA.to(A.dtype), dB.to(B.dtype), dC.to(C.dtype)]
    grads.append(dD.to(D.dtype) if D is not None else x.new_empty(0))
    grads.append(dinitial.to(initial_state.dtype) if initial_state is not None else x.new_empty(0))
    return tuple(grads)


@chunk_scan_bwd.register_fake
def _(dy, dfinal_state, x, dt, A, B, C, D, initial_state, y, chunk_size):
    grads = [torch.empty_like(t) for t in (x, dt, A, B, C)]
    grads.append(torch.empty_like(D) if D is not None else x.new_empty(0))
    grads.append(torch.empty_like(initial_state) if initial_state is not None else x.new_empty(0))
    return tuple(grads)


def _setup_context(ctx, inputs, output) -> None:
    x, dt, A, B, C, D, initial_state, chunk_size = inputs
    ctx.save_for_backward(x, dt, A, B, C, D, initial_state, output[0])
    ctx.chunk_size = chunk_size
    ctx.has_D, ctx.has_initial_state = D is not None, initial_state is not None


def _backward(ctx, dy: Tensor, dfinal_state: Tensor | None):
    x, dt, A, B, C, D, initial_state, y = ctx.saved_tensors
    # The backward is itself a custom op: AOTAutograd traces this function, and mamba-ssm's
    # launches cannot run on the fake tensors of a trace.
    dx, ddt, dA, dB, dC, dD, dinitial = chunk_scan_bwd(
        dy, dfinal_state, x, dt, A, B, C, D, initial_state, y, ctx.chunk_size
    )
    return dx, ddt, dA, dB, dC, (dD if ctx.has_D else None), (dinitial if ctx.has_initial_state else None), None


chunk_scan.register_autograd(_backward, setup_context=_setup_context)
