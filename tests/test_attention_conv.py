"""The attention mixer's optional short conv (``d_conv``): what it computes, that it keeps
attention causal, and that prefill + decode (chunked, ragged, compiled) equal the forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.inference import compile_step, decode, prefill

VOCAB, PROMPT, NEW = 50, 19, 9


def spec(d_conv: int, **params) -> dict:
    mixer = {"name": "attention", "params": {"n_heads": 4, "n_kv_heads": 2, "d_conv": d_conv, **params}}
    return {"vocab_size": VOCAB, "d_model": 32, "init": "llama", "layers": [{"mixer": mixer}] * 2}


def build(d_conv: int, seed: int = 0, **params) -> torch.nn.Module:
    torch.manual_seed(seed)
    return zoo.build(spec(d_conv, **params)).eval()


def tokens(batch: int = 2, length: int = PROMPT + NEW, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got - ref).norm() / ref.norm()).item()


def test_qkv_is_silu_of_a_depthwise_causal_conv_of_the_projections() -> None:
    mixer = build(3, qk_norm=False).blocks[0].mixer
    x = torch.randn(2, 11, 32)
    positions = torch.arange(11)
    q, k, v, state = mixer.qkv(x, positions)
    projected = torch.cat([mixer.q_proj(x), mixer.kv_proj(x)], dim=-1).transpose(1, 2)  # [B,C,T]
    weight, bias = mixer.conv1d.weight, mixer.conv1d.bias
    ref = F.silu(F.conv1d(F.pad(projected, (2, 0)), weight, bias, groups=projected.shape[1])).transpose(1, 2)
    q_ref, k_ref, v_ref = torch.split(ref, [mixer.q_channels, 2 * 8, 2 * 8], dim=-1)
    assert torch.allclose(v, v_ref.reshape(2, 11, 2, 8), atol=1e-6)
    assert torch.allclose(q, zoo.ops.rope.rotary(q_ref.reshape(2, 11, 4, 8), positions, mixer.rope_theta), atol=1e-6)
    assert torch.allclose(k, zoo.ops.rope.rotary(k_ref.reshape(2, 11, 2, 8), positions, mixer.rope_theta), atol=1e-6)
    assert torch.equal(state, projected[:, :, -2:])


def test_conv_adds_its_parameters_and_default_has_none() -> None:
    plain, conv = build(0), build(4)
    channels = 4 * 8 + 2 * 2 * 8
    extra = sum(p.numel() for p in conv.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == 2 * (channels * 4 + channels)  # weight + bias per layer
    assert plain.blocks[0].mixer.conv1d is None
    assert plain.allocate_cache(1, 8).layers[0].conv is None


@pytest.mark.parametrize("d_conv", [1, 4])
def test_output_at_t_depends_on_no_later_token(d_conv: int) -> None:
    model = build(d_conv)
    ids = tokens(1)
    changed = ids.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.equal(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10], b[:, 10])


@pytest.mark.parametrize("width", [1, 3])
def test_a_key_mixes_its_token_with_the_w_minus_1_before_it(width: int) -> None:
    """A change at token 5 moves the keys at 5 .. 5 + W - 1 and no others: with width 1 the
    keys do not mix tokens at all."""
    mixer = build(width).blocks[0].mixer
    x = torch.randn(1, 12, 32, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[0, 5] += 1.0
    positions = torch.arange(12)
    _, k_x, _, _ = mixer.qkv(x, positions)
    _, k_y, _, _ = mixer.qkv(y, positions)
    moved = (k_x - k_y).abs().amax(dim=(0, 2, 3)) > 0
    assert moved.tolist() == [False] * 5 + [True] * width + [False] * (7 - width)


def test_conv_bias_can_be_off() -> None:
    mixer = build(4, conv_bias=False).blocks[0].mixer
    assert mixer.conv1d.bias is None
    zero = mixer.qkv(torch.zeros(1, 5, 32), torch.arange(5))
    assert all(torch.equal(t, torch.zeros_like(t)) for t in zero[:3])  # no bias: zeros stay zeros


@pytest.mark.parametrize(
    "width, chunk, dtype, tol",
    [(4, None, torch.float32, 1e-5), (4, 1, torch.float32, 1e-5), (4, 5, torch.float32, 1e-5)]
    + [(1, 3, torch.float32, 1e-5), (4, 5, torch.bfloat16, 2e-2)],
    ids=["w4", "w4-chunk1", "w4-chunk5", "w1-chunk3", "w4-chunk5-bf16"],
)
def test_prefill_then_decode_equals_forward(width, chunk, dtype, tol) -> None:
    model = build(width).to(dtype)
    ids = tokens()
    cache = model.allocate_cache(2, PROMPT + NEW)
    with torch.no_grad():
        logits = [prefill(model, cache, ids[:, :PROMPT], chunk_size=chunk)]
        for index in range(PROMPT, PROMPT + NEW - 1):
            logits.append(decode(model, cache, ids[:, index]))
        ref = model(ids)[:, PROMPT - 1 : -1]
    assert cache.layers[0].conv.dtype == dtype
    assert rel_err(torch.stack(logits, dim=1).float(), ref.float()) < tol


def test_ragged_prompts_decode_as_each_alone() -> None:
    model = build(4)
    ids = tokens(3)
    lengths = [6, PROMPT, 11]
    padded = ids[:, :PROMPT].clone()
    for row, n in enumerate(lengths):
        padded[row, n:] = 0
    with torch.no_grad():
        got = zoo.generate(model, padded, 5, lengths=lengths)
        for row, n in enumerate(lengths):
            alone = zoo.generate(model, ids[row : row + 1, :n], 5)
            assert got[row].tolist() == alone[0].tolist(), f"row {row}"


def test_compiled_decode_step_is_one_fullgraph() -> None:
    torch._dynamo.reset()
    model = build(4)
    ids = tokens(1)
    step = compile_step(model, backend="eager")
    compiled, eager = model.allocate_cache(1, PROMPT + NEW), model.allocate_cache(1, PROMPT + NEW)
    with torch.no_grad():
        prefill(model, compiled, ids[:, :PROMPT])
        prefill(model, eager, ids[:, :PROMPT])
        for index in range(PROMPT, PROMPT + NEW - 1):
            got = decode(model, compiled, ids[:, index], step)
            assert rel_err(got, decode(model, eager, ids[:, index])) < 1e-5


def test_forward_compiles_fullgraph_and_trains() -> None:
    model = build(4).train()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    ids = tokens()
    loss = compiled(ids[:, :-1], targets=ids[:, 1:])
    loss.backward()
    assert model.blocks[0].mixer.conv1d.weight.grad.abs().sum() > 0


def test_bad_width_is_one_line_naming_the_field() -> None:
    with pytest.raises(zoo.SpecError, match="d_conv"):
        zoo.build(spec(-1))


def test_the_llama_anchor_refuses_what_llama_has_not() -> None:
    """Refused before transformers is imported: the check needs no optional dependency."""
    from zoo.specs import load_spec
    from zoo.training.hf_anchor import llama_like

    with pytest.raises(ValueError, match="short conv"):
        llama_like(load_spec(spec(4)), 32, torch.device("meta"))
    with pytest.raises(ValueError, match="RoPE theta 1e4"):
        llama_like(load_spec(spec(0, rope_theta=5e5)), 32, torch.device("meta"))
