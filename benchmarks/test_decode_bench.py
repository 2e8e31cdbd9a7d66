"""pytest-benchmark: one decode step vs context length, transmamba vs transformer vs mamba2.

    pytest benchmarks/test_decode_bench.py --benchmark-enable --benchmark-group-by=group

Each preset's decode parity (prefill + steps == full forward) is checked first; a preset
that fails it fails its benchmark instead of reporting a number. The cache's live bytes
go into ``extra_info``.
"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.inference import decode, prefill
from zoo.inference.bench import decode_parity

PRESETS = ("transmamba-tiny", "transformer-tiny", "mamba2-tiny")
CONTEXTS = (128, 1024)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    built = {name: zoo.build(name, requires_grad=False).eval() for name in PRESETS}
    for name, model in built.items():
        assert decode_parity(model) < 1e-4, f"{name}: decode parity failed, not benchmarking"
    return built


@pytest.mark.parametrize("context", CONTEXTS)
@pytest.mark.parametrize("preset", PRESETS)
def test_decode_step(benchmark, models, preset, context) -> None:
    benchmark.group = f"decode-step-ctx{context}"
    model = models[preset]
    rounds = 20
    cache = model.allocate_cache(1, context + rounds * 2 + 8)
    prompt = torch.randint(0, model.spec.vocab_size, (1, context), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        state = {"tokens": prefill(model, cache, prompt).argmax(-1)}

        def step() -> None:
            state["tokens"] = decode(model, cache, state["tokens"]).argmax(-1)

        benchmark.pedantic(step, rounds=rounds, warmup_rounds=2, iterations=1)
    benchmark.extra_info["cache_bytes"] = cache.nbytes()
    benchmark.extra_info["tokens_per_s"] = 1.0 / benchmark.stats.stats.mean if benchmark.stats else None
