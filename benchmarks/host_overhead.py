"""Host time of one Triton SSD call, kernels left out (runs on any machine, CPU tensors).

At B=1 and T <= 8K a fwd+bwd step of the Triton SSD waits on the host: through the custom
op an H200 sat idle for 0.3-1.3 ms of a 1.2-1.9 ms step (docs/benchmarks.md). This
script times what the host does around the kernels: the Python of ``zoo_plugins.triton_ssd``,
torch's dispatch and autograd. The kernel launches are replaced by no-ops, so Triton's own
launch cost (about 10-20 us per launch, 8 launches per fwd+bwd) is not included.

Two paths, same run: ``eager`` is what ``ssd()`` runs outside torch.compile
(``ops._EagerSSD``, a plain autograd.Function); ``op`` calls the ``zoo_triton_ssd::ssd_fwd``
custom op directly, with its registered autograd formula, as a compiled graph records it.

    python benchmarks/host_overhead.py [--seq-len 512] [--repeats 300]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


class _NoLaunch:
    """Stands in for a ``@triton.jit`` function: ``kernel[grid](...)`` does nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


def stub_kernels() -> None:
    from zoo_plugins.triton_ssd import kernels, kernels_bwd

    for module in (kernels, kernels_bwd):
        for name in dir(module):
            if hasattr(getattr(module, name), "run"):  # a JITFunction
                setattr(module, name, _NoLaunch())


def per_call_us(fn, repeats: int, rounds: int = 5) -> float:
    """Median over rounds of the mean time of ``repeats`` calls, in microseconds."""
    for _ in range(20):
        fn()
    means = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(repeats):
            fn()
        means.append((time.perf_counter() - began) / repeats * 1e6)
    return statistics.median(means)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=512, help="only allocation sizes depend on it")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    stub_kernels()
    from zoo_plugins.triton_ssd import ops

    B, T, H, P, G, N = args.batch, args.seq_len, 48, 64, 8, 128
    leaf = lambda *shape, dtype=torch.bfloat16: torch.zeros(*shape, dtype=dtype).requires_grad_()  # noqa: E731
    x, dt, A = leaf(B, T, H, P), leaf(B, T, H, dtype=torch.float32), leaf(H, dtype=torch.float32)
    Bm, Cm, D = leaf(B, T, G, N), leaf(B, T, G, N), leaf(H, dtype=torch.float32)
    dy = torch.zeros(B, T, H, P, dtype=torch.bfloat16)
    leaves = (x, dt, A, Bm, Cm, D)
    paths = {"eager": ops.scan, "op": ops.ssd_fwd}
    print(f"torch {torch.__version__}; B={B} T={T} H={H} P={P} G={G} N={N}; kernels stubbed out")
    print("| path | fwd (no grad) us | fwd+bwd us |\n|---|---|---|")
    for name, call in paths.items():

        def forward(call=call):
            with torch.no_grad():
                call(x, dt, A, Bm, Cm, D, None, 0, 64, False)

        def forward_backward(call=call):
            for tensor in leaves:
                tensor.grad = None
            y, _, _ = call(x, dt, A, Bm, Cm, D, None, 0, 64, True)
            y.backward(dy)

        fwd_us, fwd_bwd_us = per_call_us(forward, args.repeats), per_call_us(forward_backward, args.repeats)
        print(f"| {name} | {fwd_us:.1f} | {fwd_bwd_us:.1f} |")


if __name__ == "__main__":
    main()
