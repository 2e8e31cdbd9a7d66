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
    x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None, initial_state: Tensor | None,
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


def _setup_context(ctx, inputs, output) -> None:
    x, dt, A, B, C, D, initial_state, chunk_size = inputs
    ctx.save_for_backward(x, dt, A, B, C, D, initial_state, output[0])
    ctx.chunk_size = chunk_size


def _backward(ctx, dy: Tensor, dfinal_state: Tensor):
    x, dt, A, B, C, D, initial_state, y = ctx.saved_tensors
    backward = loader.combined_module()._mamba_chunk_scan_combined_bwd
    dx, ddt, dA, dB, dC, dD, _dz, _ddt_bias, dinitial = backward(
        dy, x, dt, A, B, C, y, ctx.chunk_size, D=D, initial_states=initial_state, dfinal_states=dfinal_state
    )
    return dx, ddt, dA, dB, dC, dD, dinitial, None


chunk_scan.register_autograd(_backward, setup_context=_setup_context)
