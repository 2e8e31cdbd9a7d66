"""fla's ``chunk_simple_gla`` as a forward-only peer of the SSD benchmark.

Shape legend: B batch, T tokens, H heads, P head dim, G groups, N state dim.

SSD is gated linear attention with one scalar decay per head and token::

    SSD:         h_t = exp(dt_t A) h_{t-1} + (dt_t x_t) B_t^T      y_t = h_t C_t + D x_t
    simple GLA:  S_t = exp(g_t)    S_{t-1} + k_t v_t^T             o_t = scale q_t^T S_t

so ``q = C``, ``k = B`` (each group's B and C copied to its H/G heads: fla's q and k have as
many heads as v), ``v = dt * x``, ``g = dt * A`` (the log decay, per head and token),
``scale = 1`` (fla's default is 1/sqrt(K)), and the D skip is added outside. fla's tensors
are ``[B, T, H, K]`` (no head-first layout) and its state is ``[B, H, K, V] = [B, H, N, P]``,
the transpose of ours. The copies of B and C, ``dt * x`` and the D skip are extra kernels a
caller of fla pays for SSD, so they are timed with it.

fla's backward refuses Triton < 3.7.1 on Hopper (a wrong-result bug in its gated
``chunk_bwd_dqkwg``), so the benchmark times the forward only. It times fla twice: as an SSD
(:func:`fla_ssd`, everything above included) and as its kernel alone (:class:`KernelOnly`,
q, k, v and g made once outside the timing, no D skip): the second is the lower bound of what
fla's kernel costs, the difference is what the SSD-to-GLA mapping adds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from einops import repeat

PEER = "fla simple_gla (fwd only)"
KERNEL_PEER = "fla kernel alone (fwd only)"


def available() -> tuple[bool, str]:
    """(True, "") when fla's chunk_simple_gla imports; else (False, why)."""
    try:
        from fla.ops.simple_gla import chunk_simple_gla  # noqa: F401
    except Exception as error:  # ImportError, or fla failing on this platform at import
        return False, f"fla is not importable ({type(error).__name__}: {str(error)[:160]}); pip install fla-core"
    return True, ""


def ssd_as_simple_gla(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [B,T,H,P], dt [B,T,H], A [H], B/C [B,T,G,N] -> q, k [B,T,H,N], v [B,T,H,P], g [B,T,H].

    q and k keep B's and C's dtype, v is rounded to x's dtype, g is fp32 (fp64 for fp64 inputs)."""
    heads_per_group = x.shape[2] // B.shape[2]
    q = repeat(C, "b t g n -> b t (g r) n", r=heads_per_group)
    k = repeat(B, "b t g n -> b t (g r) n", r=heads_per_group)
    work = torch.promote_types(x.dtype, torch.float32)
    dt = dt.to(work)
    v = (x.to(work) * dt[..., None]).to(x.dtype)
    g = dt * A.to(work)
    return q, k, v, g


def fla_ssd(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    D: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    kernel: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None,
    **options: Any,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The SSD (as ``zoo.ops.ssd.reference.ssd_scan``: y in x's dtype, the state [B,H,P,N] in
    fp32) through an fla simple-GLA kernel: ``chunk_simple_gla`` by default, or any function
    with its arguments (fla's naive ones, for a check on the CPU); ``options`` go to it."""
    if kernel is None:
        from fla.ops.simple_gla import chunk_simple_gla as kernel
    q, k, v, g = ssd_as_simple_gla(x, dt, A, B, C)
    h0 = None if initial_state is None else initial_state.float().transpose(-1, -2).contiguous()
    o, state = kernel(q, k, v, g=g, scale=1.0, initial_state=h0, output_final_state=return_final_state, **options)
    work = torch.promote_types(x.dtype, torch.float32)
    y = o.to(work)
    if D is not None:
        y = y + D.to(work)[:, None] * x.to(work)
    y = y.to(x.dtype)
    if not return_final_state:
        return y
    return y, state.float().transpose(-1, -2)


class KernelOnly:
    """``chunk_simple_gla`` alone, called like :func:`fla_ssd`: the q, k, v, g it needs are made
    on the first call for a given set of input tensors and reused while the same tensors come
    back, so a timing loop over one set of inputs times the kernel only. Returns fla's output
    without the D skip (for timing, not for parity)."""

    def __init__(self, kernel: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None) -> None:
        self.kernel = kernel
        self._key: tuple[int, ...] | None = None
        self._prepared: tuple[torch.Tensor, ...] = ()

    def __call__(
        self, x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, **_: Any
    ) -> torch.Tensor:
        if self.kernel is None:
            from fla.ops.simple_gla import chunk_simple_gla

            self.kernel = chunk_simple_gla
        key = tuple(t.data_ptr() for t in (x, dt, A, B, C)) + tuple(x.shape) + tuple(B.shape)
        if key != self._key:
            self._key, self._prepared = key, ssd_as_simple_gla(x, dt, A, B, C)
        q, k, v, g = self._prepared
        return self.kernel(q, k, v, g=g, scale=1.0, output_final_state=False)[0]


def parity(
    make_inputs: Callable[..., dict[str, torch.Tensor]],
    cases: list[tuple[int, int]],
    report: list[str],
    kernel: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None,
) -> bool:
    """fla's forward (y and final state, with an initial state) against the fp64 chunked SSD
    at the bf16 tolerance of the other backends; rows in the parity table's format.
    ``kernel`` as :func:`fla_ssd`'s (a naive one checks this function on the CPU)."""
    from zoo.ops.ssd.chunked import ssd_chunked
    from zoo.testing import rel_err, tolerance

    ok = True
    for batch, seq_len in cases:
        t = make_inputs(batch, seq_len, grad=False, seed=seq_len)
        heads, head_dim, state_dim = t["x"].shape[2], t["x"].shape[3], t["B"].shape[3]
        init = torch.randn(batch, heads, head_dim, state_dim, device=t["x"].device)
        case_id = f"B{batch}-T{seq_len}-H{heads}-P{head_dim}-N{state_dim}-G{t['B'].shape[2]}-init"
        with torch.no_grad():
            ref = {k: v.double() for k, v in t.items()}
            y_ref, state_ref = ssd_chunked(
                ref["x"],
                ref["dt"],
                ref["A"],
                ref["B"],
                ref["C"],
                D=ref["D"],
                initial_state=init.double(),
                return_final_state=True,
                chunk_size=64,
            )
            try:
                y, state = fla_ssd(
                    t["x"],
                    t["dt"],
                    t["A"],
                    t["B"],
                    t["C"],
                    D=t["D"],
                    initial_state=init,
                    return_final_state=True,
                    kernel=kernel,
                )
                errors = {"y": rel_err(y, y_ref), "final_state": rel_err(state, state_ref)}
                failed = {k: v for k, v in errors.items() if not v <= tolerance(torch.bfloat16)}
                verdict = "pass" if not failed else "FAIL " + ", ".join(f"{k} {v:.2e}" for k, v in failed.items())
            except Exception as error:  # a crash is a failed parity, reported
                errors, verdict = {}, f"FAIL {type(error).__name__}: {str(error)[:200]}"
        ok = ok and verdict == "pass"
        report.append(
            f"| {PEER} | {case_id} | {errors.get('y', float('nan')):.2e} "
            f"| {errors.get('final_state', float('nan')):.2e} | - (forward only) | {verdict} |"
        )
    return ok
