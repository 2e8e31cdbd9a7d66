"""Shared pieces of the SSD GPU benchmark (entry point: ``benchmarks/gpu_ssd.py``): the
benchmark shapes, the run clock and log, the bf16 inputs, ``do_bench`` timing of one backend
(forward, forward+backward), the device-copy bandwidth, and the forward's byte and FLOP counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

HEADS, HEAD_DIM, STATE_DIM, GROUPS = 48, 64, 128, 8
SHAPES = [(1, 2048), (1, 8192), (1, 32768), (1, 65536), (8, 2048)]
START = time.time()


def log(message: str) -> None:
    print(f"[{time.time() - START:7.1f}s] {message}", flush=True)


def inputs(batch: int, seq_len: int, *, grad: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator(device="cuda").manual_seed(seed)

    def randn(*shape: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, device="cuda", dtype=torch.float32).to(dtype)

    tensors = {
        "x": randn(batch, seq_len, HEADS, HEAD_DIM),
        "dt": F.softplus(randn(batch, seq_len, HEADS, dtype=torch.float32) - 1.0),
        "A": -torch.exp(torch.rand(HEADS, generator=gen, device="cuda") * 2.5 - 1.0),
        "B": randn(batch, seq_len, GROUPS, STATE_DIM) / STATE_DIM**0.5,
        "C": randn(batch, seq_len, GROUPS, STATE_DIM) / STATE_DIM**0.5,
        "D": randn(HEADS, dtype=torch.float32),
    }
    for value in tensors.values():
        value.requires_grad_(grad)
    return tensors


def bench(fn: Callable[[], object], grads: list[torch.Tensor] | None = None) -> float:
    import triton.testing

    return triton.testing.do_bench(fn, warmup=25, rep=100, grad_to_none=grads, return_mode="median")


def copy_bandwidth() -> float:
    """Device-to-device copy, bytes read + written per second."""
    src = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    ms = bench(lambda: dst.copy_(src))
    return 2 * 2 * 1024**3 / (ms * 1e-3)


def time_forward(call: Callable, batch: int, seq_len: int) -> float:
    t = inputs(batch, seq_len, grad=False)
    with torch.no_grad():
        return bench(lambda: call(t["x"], t["dt"], t["A"], t["B"], t["C"], D=t["D"]))


def time_forward_backward(call: Callable, batch: int, seq_len: int) -> float:
    t = inputs(batch, seq_len, grad=True)
    dy = torch.randn(batch, seq_len, HEADS, HEAD_DIM, device="cuda", dtype=torch.bfloat16)

    def step() -> None:
        y = call(t["x"], t["dt"], t["A"], t["B"], t["C"], D=t["D"])
        y.backward(dy)

    return bench(step, grads=list(t.values()))


def time_backend(call: Callable, batch: int, seq_len: int) -> tuple[float, float]:
    fwd = time_forward(call, batch, seq_len)
    torch.cuda.empty_cache()
    fwd_bwd = time_forward_backward(call, batch, seq_len)
    torch.cuda.empty_cache()
    return fwd, fwd_bwd


def fwd_bytes(batch: int, seq_len: int) -> int:
    """Bytes the forward must move at least: read x, B, C (bf16), dt (fp32); write y."""
    tokens = batch * seq_len
    return tokens * (2 * HEADS * HEAD_DIM * 2 + 2 * GROUPS * STATE_DIM * 2 + HEADS * 4)


def fwd_flops(batch: int, seq_len: int) -> int:
    """Linear-time SSD arithmetic: state update + read-out, 2 * 2*T*H*P*N."""
    return 4 * batch * seq_len * HEADS * HEAD_DIM * STATE_DIM
