"""Generation API, sampling, compiled decode, and the CLI commands (CPU)."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.cli import main
from zoo.inference import compile_step, decode, prefill, sample


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return zoo.build("transmamba-tiny").eval()


def test_greedy_generate_equals_argmax_of_full_forward(model):
    prompt = torch.randint(0, 260, (2, 9), generator=torch.Generator().manual_seed(3))
    new = 8
    out = zoo.generate(model, prompt, new, temperature=0.0)
    assert out.shape == (2, new)
    # re-derive greedily from full forwards under the same per-layer TransPoints (max_length = 9 + new)
    transpoints = model.transpoints_for(9 + new)
    seq = prompt
    with torch.no_grad():
        for _ in range(new):
            next_token = model(seq, transpoints=transpoints)[:, -1].argmax(-1)
            seq = torch.cat([seq, next_token[:, None]], dim=1)
    assert torch.equal(out, seq[:, 9:])


def test_sampling_is_seeded_and_respects_top_k(model):
    prompt = torch.randint(0, 260, (1, 5), generator=torch.Generator().manual_seed(4))
    a = zoo.generate(model, prompt, 6, temperature=1.0, top_k=3, top_p=0.9, seed=7)
    b = zoo.generate(model, prompt, 6, temperature=1.0, top_k=3, top_p=0.9, seed=7)
    assert torch.equal(a, b)
    logits = torch.tensor([[0.0, 5.0, 4.0, -1.0]])
    for seed in range(5):
        token = sample(logits, temperature=1.0, top_k=2, generator=torch.Generator().manual_seed(seed))
        assert token.item() in (1, 2)
    assert sample(logits, temperature=1.0, top_p=1e-3).item() == 1


def test_eos_stops_and_pads(model):
    prompt = torch.randint(0, 260, (1, 5), generator=torch.Generator().manual_seed(5))
    first = zoo.generate(model, prompt, 1)[0, 0].item()
    seen = []
    out = zoo.generate(model, prompt, 6, eos_id=first, on_token=seen.append)
    assert seen == [[first]] and out[0].tolist() == [first] * 6


def test_ragged_generate_equals_each_prompt_alone(model):
    g = torch.Generator().manual_seed(6)
    prompts = [torch.randint(0, 260, (n,), generator=g) for n in (4, 11, 7)]
    padded = torch.zeros(3, 11, dtype=torch.long)
    for row, p in enumerate(prompts):
        padded[row, : len(p)] = p
    out = zoo.generate(model, padded, 6, lengths=[4, 11, 7])
    for row, p in enumerate(prompts):
        # alone, with the batch's max_length (11 + 6) so every layer has the same TransPoint
        cache = model.allocate_cache(1, 17)
        with torch.no_grad():
            logits = prefill(model, cache, p[None])
            alone = []
            for _ in range(6):
                token = logits.argmax(-1)
                alone.append(token.item())
                logits = decode(model, cache, token)
        assert out[row].tolist() == alone


@pytest.mark.slow
def test_compiled_decode_fullgraph_one_graph_per_phase(model):
    """Static-shape step under torch.compile(fullgraph): equal logits; graphs change only at TransPoints."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    transpoints = [0, 8, 20, 20, 30, 30]
    tokens = torch.randint(0, 260, (1, 30), generator=torch.Generator().manual_seed(8))
    step = compile_step(model, backend="eager")
    compiled = model.allocate_cache(1, 30, transpoints=transpoints)
    eager = model.allocate_cache(1, 30, transpoints=transpoints)
    phases = set()
    with torch.no_grad():
        prefill(model, compiled, tokens[:, :12])
        prefill(model, eager, tokens[:, :12])
        for index in range(12, 29):
            phases.add(compiled.phases())
            got = decode(model, compiled, tokens[:, index], step)
            ref = decode(model, eager, tokens[:, index])
            assert ((got - ref).norm() / ref.norm()).item() < 1e-5
    # 17 steps, 3 phase tuples (before P=20, the crossing step, after): 3 graphs, not 17
    assert len(phases) == 3
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= len(phases)


def test_cli_generate_and_bench_decode(capsys):
    assert main(["generate", "transmamba-tiny", "--prompt", "hi", "--max-new-tokens", "4", "--no-eos"]) == 0
    assert capsys.readouterr().out.startswith("hi")
    assert (
        main(["bench-decode", "--contexts", "16", "--steps", "2", "--presets", "mamba2-tiny", "transformer-tiny"]) == 0
    )
    out = capsys.readouterr().out
    assert "mamba2-tiny" in out and "tokens/s" in out


def test_decode_modes_agree_between_cli_and_library():
    """``zoo bench-decode --mode`` offers exactly the modes ``make_step`` knows (the CLI keeps
    its own list so that ``zoo --help`` does not import torch), and an unknown mode is a
    clear error naming them."""
    import argparse

    from zoo.cli import bench_decode
    from zoo.inference.bench import MODES, make_step

    parser = argparse.ArgumentParser()
    bench_decode.register(parser.add_subparsers())
    choices = next(
        a for a in parser._subparsers._group_actions[0].choices["bench-decode"]._actions if a.dest == "mode"
    ).choices
    assert list(choices) == list(MODES)
    with pytest.raises(ValueError, match="max-autotune"):
        make_step(None, None, "fastest")


def test_full_cache_is_a_clear_error(model):
    cache = model.allocate_cache(1, 4)
    with torch.no_grad():
        logits = prefill(model, cache, torch.zeros(1, 4, dtype=torch.long))
        with pytest.raises(ValueError, match="cache is full"):
            decode(model, cache, logits.argmax(-1))


@pytest.mark.slow
def test_prefill_and_decode_ignore_the_callers_grad_mode(model):
    """In grad mode (the default) the in-place cache updates must not record gradients: a
    compiled step (AOT autograd traces it) failed on such a cache before prefill/decode
    turned autograd off themselves."""
    assert torch.is_grad_enabled()
    tokens = torch.randint(0, 260, (1, 12), generator=torch.Generator().manual_seed(9))
    cache = model.allocate_cache(1, 16)
    logits = prefill(model, cache, tokens)
    held = [t for layer in cache.layers for t in vars(layer).values() if torch.is_tensor(t)]
    assert not logits.requires_grad and not any(t.requires_grad for t in held)
    step = compile_step(model, backend="aot_eager")
    out = decode(model, cache, logits.argmax(-1), step)
    assert not out.requires_grad and torch.isfinite(out).all()
