"""The Triton SSD as ``torch.library`` custom ops, so compiled models keep ``fullgraph=True``.

Shape legend as in :mod:`zoo_plugins.triton_ssd.kernels`. Two ops:

- ``zoo_triton_ssd::ssd_fwd(x, dt, A, B, C, D?, initial_state?, out_start, chunk_size,
  save_states, tuning?) -> (y [B, T - out_start, H, P], final_state [B,H,P,N] fp32,
  states [B,H,nc,P,N])``: ``states`` are the chunks' entering states in the dtype of x
  (fp32 when x is fp16), saved for the backward (empty unless save_states; the backward
  then recomputes them from the inputs and ``initial_state``, trading one extra state walk
  for their memory).
  ``out_start`` is the first token whose output is computed: 0 for a plain scan, the
  TransPoint for the fused converter + suffix scan, T for the converter alone.
  ``tuning`` is :meth:`Tuning.to_args` (None: the defaults).
- ``zoo_triton_ssd::ssd_bwd(...)`` -> gradients of x, dt, A, B, C, D, initial_state.

The autograd formula registered on ``ssd_fwd`` calls ``ssd_bwd``. ``scan`` is what the
public functions call: the op when traced, and for a plain eager call ``_EagerSSD``, an
``autograd.Function`` over the same launch code that skips the custom-op dispatch
(:func:`plain_eager_call` says when, and why it is worth it).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

from zoo_plugins.triton_ssd import launch
from zoo_plugins.triton_ssd.plan import cdiv, effective_chunk, saved_dtype
from zoo_plugins.triton_ssd.tuning import Tuning

_LIB = "zoo_triton_ssd"


@torch.library.custom_op(f"{_LIB}::ssd_fwd", mutates_args=())
def ssd_fwd(
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
    tuning: list[int] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    return launch.forward(
        x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states, Tuning.from_args(tuning)
    )


@ssd_fwd.register_fake
def _ssd_fwd_fake(x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states, tuning=None):
    batch, seq_len, n_heads, head_dim = x.shape
    state_dim = B.shape[3]
    n_chunks = cdiv(seq_len, effective_chunk(chunk_size, x))
    y = x.new_empty(batch, seq_len - out_start, n_heads, head_dim)
    final_state = x.new_empty(batch, n_heads, head_dim, state_dim, dtype=torch.float32)
    if save_states:
        states = x.new_empty(batch, n_heads, n_chunks, head_dim, state_dim, dtype=saved_dtype(x))
    else:
        states = x.new_empty(0, dtype=saved_dtype(x))
    return y, final_state, states


@torch.library.custom_op(f"{_LIB}::ssd_bwd", mutates_args=())
def ssd_bwd(
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
    tuning: list[int] | None = None,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return _bwd_eager(dy, dfinal_state, x, dt, A, B, C, D, states, out_start, chunk_size, tuning, initial_state)


@ssd_bwd.register_fake
def _ssd_bwd_fake(dy, dfinal_state, x, dt, A, B, C, D, states, out_start, chunk_size, tuning=None, initial_state=None):
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
    x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states, tuning = inputs
    _, _, states = output
    # Without saved states the backward rebuilds them, from the initial state among others.
    ctx.save_for_backward(x, dt, A, B, C, D, states, None if save_states else initial_state)
    ctx.out_start = out_start
    ctx.chunk_size = chunk_size
    ctx.tuning = tuning
    ctx.has_D = D is not None
    ctx.has_init = initial_state is not None
    ctx.init_dtype = initial_state.dtype if initial_state is not None else None
    # Outputs that got no gradient arrive as None instead of zeros: autograd would otherwise
    # fill a zero gradient for the saved ``states`` output (as large as the chunk states,
    # 805 MB at B=1, T=64K in bf16) and for an unused final state on every backward.
    # ssd_bwd takes None for both dy and dfinal_state.
    ctx.set_materialize_grads(False)


def _gradients(ctx, dy, dfinal_state, bwd) -> tuple:
    x, dt, A, B, C, D, states, initial_state = ctx.saved_tensors
    if dy is not None:
        dy = dy.contiguous()  # traced under torch.compile: fused into dy's producer (see scan)
    dx, ddt, dA, dB, dC, dD, d_init = bwd(
        dy, dfinal_state, x, dt, A, B, C, D, states, ctx.out_start, ctx.chunk_size, ctx.tuning, initial_state
    )
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
        None,
    )


def _backward(ctx, dy, dfinal_state, _dstates):
    # the op, so that a compiled backward records it (opaque, with its fake kernel)
    return _gradients(ctx, dy, dfinal_state, ssd_bwd)


ssd_fwd.register_autograd(_backward, setup_context=_setup_context)


def _bwd_eager(dy, dfinal_state, x, dt, A, B, C, D, states, out_start, chunk_size, tuning, initial_state):
    tuning = Tuning.from_args(tuning)
    return launch.backward(dy, dfinal_state, x, dt, A, B, C, D, states, out_start, chunk_size, tuning, initial_state)


class _EagerSSD(torch.autograd.Function):
    """The ``ssd_fwd`` op and its autograd formula, without the custom-op machinery.

    Same launch code (:mod:`zoo_plugins.triton_ssd.launch`) and the same saved tensors;
    what it skips is host work: the dispatcher round trips and torch.library's Python
    autograd wrapper, which on the H200 host left the GPU idle for 0.3-1.3 ms of a B=1
    fwd+bwd step (docs/benchmarks.md, host overhead).
    """

    @staticmethod
    def forward(ctx, x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states, tuning):
        output = launch.forward(
            x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states, Tuning.from_args(tuning)
        )
        _setup_context(ctx, (x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states, tuning), output)
        ctx.mark_non_differentiable(output[2])
        return output

    @staticmethod
    @torch.autograd.function.once_differentiable  # like the op: no double backward
    def backward(ctx, dy, dfinal_state, _dstates):
        # compiled autograd traces this backward: it must see the op, not the kernels
        return _gradients(ctx, dy, dfinal_state, ssd_bwd if torch.compiler.is_compiling() else _bwd_eager)


def plain_eager_call(x: Tensor) -> bool:
    """Whether ``scan`` may take the eager fast path (``_EagerSSD``) for input ``x``.

    Only a plain eager call may: not under torch.compile (dynamo must record the op), ``x``
    a plain Tensor (a subclass such as FakeTensor needs the op's fake kernel), and no
    Python dispatch mode active (make_fx and other tracers run as one, and must record the
    op rather than run Triton launches). Everything else gets the custom op.
    """
    return not torch.compiler.is_compiling() and type(x) is Tensor and _get_current_dispatch_mode() is None


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
    tuning: list[int] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """``ssd_fwd`` (arguments and outputs as the op's): the op when traced, ``_EagerSSD``
    for a plain eager call (:func:`plain_eager_call`).

    The kernels read contiguous tensors. In a mixer, x, B and C are slices of one conv
    output; made contiguous here, outside the op, a compiled graph writes them from the
    conv's own kernel instead of copying them inside the op (forward and again in the
    backward, from the saved slices: six strided copies, 0.21 ms of a 4.1 ms transmamba
    fwd+bwd at T=8192 on the H200, docs/benchmarks.md).
    """
    x, dt, A, B, C = (v.contiguous() for v in (x, dt, A, B, C))
    if plain_eager_call(x):
        return _EagerSSD.apply(x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states, tuning)
    return ssd_fwd(x, dt, A, B, C, D, initial_state, out_start, chunk_size, save_states, tuning)
