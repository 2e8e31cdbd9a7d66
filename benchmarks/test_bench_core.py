"""pytest-benchmark suite: backends and architectures side by side.

    pytest benchmarks/test_bench_core.py --benchmark-enable --benchmark-group-by=group

Every benchmarked backend is first checked against the reference on the same inputs;
a backend that fails parity fails its benchmark instead of reporting a number.
"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.bench import _backend
from zoo.registry import ATTENTION, SSM
from zoo.testing.checks import rel_err

T_SSM, T_ATTN = 1024, 1024


@pytest.fixture(scope="module")
def ssm_inputs():
    g = torch.Generator().manual_seed(0)
    H, P, N, G = 8, 32, 32, 1
    x = torch.randn(1, T_SSM, H, P, generator=g)
    dt = torch.nn.functional.softplus(torch.randn(1, T_SSM, H, generator=g) - 2)
    A = -torch.rand(H, generator=g) - 0.5
    B = torch.randn(1, T_SSM, G, N, generator=g)
    C = torch.randn(1, T_SSM, G, N, generator=g)
    reference = _backend(SSM, "scan")(x, dt, A, B, C)
    return x, dt, A, B, C, reference


@pytest.mark.parametrize("name", [n for n in ("scan", "chunked")])
def test_ssm_forward(benchmark, ssm_inputs, name) -> None:
    benchmark.group = f"ssm-fwd-T{T_SSM}"
    x, dt, A, B, C, reference = ssm_inputs
    backend = _backend(SSM, name)
    with torch.no_grad():
        assert rel_err(backend(x, dt, A, B, C), reference) < 1e-5
        benchmark(backend, x, dt, A, B, C)


@pytest.mark.parametrize("name", ["eager", "sdpa", "flex"])
def test_attention_forward(benchmark, name) -> None:
    benchmark.group = f"attention-fwd-T{T_ATTN}"
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(1, T_ATTN, 2, 64, generator=g) for _ in range(2))
    v = torch.randn(1, T_ATTN, 8, 64, generator=g)
    backend = _backend(ATTENTION, name)
    ok, reason = backend.supports(device=torch.device("cpu"), dtype=torch.float32, requires_grad=0)
    if not ok:
        pytest.skip(reason)
    with torch.no_grad():
        expected = _backend(ATTENTION, "eager")(q, k, v, scale=0.125)
        assert rel_err(backend(q, k, v, scale=0.125), expected) < 1e-4
        benchmark(lambda: backend(q, k, v, scale=0.125))


@pytest.mark.parametrize("arch", ["transmamba", "transformer", "mamba2", "hybrid"])
@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["eager", "compiled"])
def test_model_forward(benchmark, arch, compiled) -> None:
    benchmark.group = "model-fwd-tiny-B4-T512"
    model = zoo.build(f"{arch}-tiny", compile=compiled)
    ids = torch.randint(0, 260, (4, 512))
    with torch.no_grad():
        model(ids)
        benchmark(model, ids)
