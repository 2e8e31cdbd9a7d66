"""Prefill + decode == full forward, for every mixer and TransPoint placement (fp32, CPU).

Legend for ids: T prompt length, N new tokens, P TransPoint(s) per layer.
"""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.inference import decode, prefill
from zoo.layers.mixers.transmamba import TransMambaCache

TOL = 1e-4
PROMPT, NEW = 37, 20
MAX_LENGTH = PROMPT + NEW


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got - ref).norm() / ref.norm()).item()


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {name: zoo.build(f"{name}-tiny").eval() for name in ("transmamba", "transformer", "mamba2", "hybrid")}


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(0, 260, (2, MAX_LENGTH), generator=torch.Generator().manual_seed(1))


def schedule(name: str, n_layers: int) -> list[int] | None:
    return {
        "v9-relative": None,  # the preset's own schedule, evaluated at max_length
        "attention-only": [MAX_LENGTH] * n_layers,
        "ssm-only": [0] * n_layers,
        "P-in-prompt": [PROMPT // 2] * n_layers,
        "P-at-prompt-end": [PROMPT] * n_layers,
        "P-in-generated": [PROMPT + NEW // 2] * n_layers,
        "mixed-per-layer": [0, 5, PROMPT, PROMPT + 1, PROMPT + 7, MAX_LENGTH][:n_layers],
    }[name]


def run_cached(model, tokens, transpoints, *, chunk_size=None):
    cache = model.allocate_cache(tokens.shape[0], MAX_LENGTH, transpoints=transpoints)
    with torch.no_grad():
        logits = [prefill(model, cache, tokens[:, :PROMPT], chunk_size=chunk_size)]
        for index in range(PROMPT, MAX_LENGTH - 1):
            logits.append(decode(model, cache, tokens[:, index]))
    return torch.stack(logits, dim=1), cache


SCHEDULES = [
    "v9-relative",
    "attention-only",
    "ssm-only",
    "P-in-prompt",
    "P-at-prompt-end",
    "P-in-generated",
    "mixed-per-layer",
]


@pytest.mark.parametrize("schedule_name", SCHEDULES)
def test_transmamba_prefill_decode_equals_forward(models, tokens, schedule_name):
    model = models["transmamba"]
    cache_probe = model.allocate_cache(1, MAX_LENGTH, transpoints=schedule(schedule_name, model.n_layers))
    transpoints = cache_probe.transpoints
    got, _ = run_cached(model, tokens, transpoints)
    with torch.no_grad():
        ref = model(tokens, transpoints=transpoints)[:, PROMPT - 1 : -1]
    assert rel_err(got, ref) < TOL


@pytest.mark.parametrize("name", ["transformer", "mamba2", "hybrid"])
def test_baselines_prefill_decode_equals_forward(models, tokens, name):
    model = models[name]
    got, _ = run_cached(model, tokens, None)
    with torch.no_grad():
        ref = model(tokens)[:, PROMPT - 1 : -1]
    assert rel_err(got, ref) < TOL


@pytest.mark.parametrize("name", ["transmamba", "transformer", "mamba2"])
@pytest.mark.parametrize("chunk", [1, 7, 31, 33])  # tiny presets: SSD chunk_size 32
def test_chunked_prefill_equals_one_prefill(models, tokens, name, chunk):
    model = models[name]
    transpoints = [0, 3, 7, 20, PROMPT, MAX_LENGTH] if name == "transmamba" else None
    length = 45
    one = model.allocate_cache(2, MAX_LENGTH, transpoints=transpoints)
    pieces = model.allocate_cache(2, MAX_LENGTH, transpoints=transpoints)
    with torch.no_grad():
        ref = model.prefill(tokens[:, :length], one.layers, 0)
        got = []
        for begin in range(0, length, chunk):
            got.append(model.prefill(tokens[:, begin : min(begin + chunk, length)], pieces.layers, begin))
        # a multi-token chunk must not take the one-token path: check the decode after it too
        one.lengths[:] = [length] * 2
        pieces.lengths[:] = [length] * 2
        one.sync_positions()
        pieces.sync_positions()
        next_ref = decode(model, one, tokens[:, length])
        next_got = decode(model, pieces, tokens[:, length])
    assert rel_err(torch.cat(got, dim=1), ref) < TOL
    assert rel_err(next_got, next_ref) < TOL


@pytest.mark.parametrize("name", ["transmamba", "transformer", "mamba2"])
def test_ragged_batch_equals_each_prompt_alone(models, tokens, name):
    model = models[name]
    # rows cross layer TransPoints at different decode steps ("mixed" phase)
    transpoints = [0, 12, 19, 22, 30, MAX_LENGTH] if name == "transmamba" else None
    lengths = [15, 25, 21]
    batch = torch.stack([tokens[0], tokens[1], tokens[0].flip(0)])
    padded = batch[:, : max(lengths)].clone()
    for row, n in enumerate(lengths):
        padded[row, n:] = 0
    steps = 12
    cache = model.allocate_cache(3, max(lengths) + steps, transpoints=transpoints)
    with torch.no_grad():
        logits = [prefill(model, cache, padded, lengths=lengths)]
        for i in range(steps - 1):
            next_tokens = torch.stack([batch[row, n + i] for row, n in enumerate(lengths)])
            logits.append(decode(model, cache, next_tokens))
        got = torch.stack(logits, dim=1)
        for row, n in enumerate(lengths):
            alone = model.allocate_cache(1, max(lengths) + steps, transpoints=cache.transpoints)
            ref = [prefill(model, alone, batch[row : row + 1, :n])]
            for i in range(steps - 1):
                ref.append(decode(model, alone, batch[row : row + 1, n + i]))
            assert rel_err(got[row], torch.cat(ref)) < TOL, f"row {row}"
            full = model(batch[row : row + 1, : n + steps - 1], transpoints=cache.transpoints)[0, n - 1 :]
            assert rel_err(got[row], full) < TOL, f"row {row} vs forward"


def test_prefix_buffer_released_after_transpoint(models, tokens):
    model = models["transmamba"]
    transpoints = [0, 10, PROMPT, PROMPT + 3, MAX_LENGTH, 20]
    cache = model.allocate_cache(2, MAX_LENGTH, transpoints=transpoints)
    layers = cache.layers
    assert all(isinstance(layer, TransMambaCache) for layer in layers)
    assert layers[0].released  # P = 0: never allocated
    with torch.no_grad():
        prefill(model, cache, tokens[:, :PROMPT])
        # passed P inside the prompt: released; P at the prompt's end: still needed
        assert layers[1].released and layers[5].released
        assert not layers[2].released and not layers[3].released
        assert cache.phases()[2] == "mixed" and cache.phases()[3] == "attn"
        decode(model, cache, tokens[:, PROMPT])  # folds layer 2 at position P
        assert layers[2].released and not layers[3].released
        for index in range(PROMPT + 1, PROMPT + 5):
            decode(model, cache, tokens[:, index])
        assert layers[3].released and not layers[4].released
        assert cache.phases()[:4] == ("ssm",) * 4


def test_released_buffer_is_never_read(models, tokens):
    """A folded layer's step runs with its buffer gone (None): any read would raise."""
    model = models["transmamba"]
    cache = model.allocate_cache(1, MAX_LENGTH, transpoints=[5] * model.n_layers)
    with torch.no_grad():
        prefill(model, cache, tokens[:1, :PROMPT])
        assert all(layer.key is None and layer.value is None and layer.dt is None for layer in cache.layers)
        decode(model, cache, tokens[:1, PROMPT])


def test_cache_shrinks_with_transpoint(models):
    model = models["transmamba"]
    attention = model.allocate_cache(1, 512, transpoints=[512] * model.n_layers).nbytes()
    ssm = model.allocate_cache(1, 512, transpoints=[0] * model.n_layers).nbytes()
    assert ssm < attention / 4
