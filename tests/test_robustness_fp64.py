"""An fp64 model computes in fp64 throughout: norms, dt/A, RoPE angles, decode attention scores.

Each check compares with an fp64 formula at a tolerance fp32 intermediates cannot meet
(fp32 RoPE angles are off by ~5e-4 at position 8191, an fp32 norm by ~1e-7).
"""

from __future__ import annotations

import math

import torch

import zoo
from zoo.inference import decode, prefill
from zoo.layers.norm import GatedRMSNorm, RMSNorm
from zoo.ops.attention.decode import masked_decode_attention
from zoo.ops.rope import rotary


def test_rope_fp64_at_8192_within_1e10() -> None:
    T, D, theta = 8192, 64, 1e4
    x = torch.randn(1, T, 2, D, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = rotary(x, torch.arange(T), theta)
    assert out.dtype == torch.float64
    for position in (1, 1000, 4097, T - 1):
        for i in range(D // 2):
            angle = position * theta ** (-2 * i / D)  # Python floats: an independent fp64 reference
            cos, sin = math.cos(angle), math.sin(angle)
            first, second = x[0, position, :, i], x[0, position, :, i + D // 2]
            torch.testing.assert_close(out[0, position, :, i], first * cos - second * sin, rtol=0, atol=1e-10)
            torch.testing.assert_close(out[0, position, :, i + D // 2], second * cos + first * sin, rtol=0, atol=1e-10)


def test_norms_fp64() -> None:
    generator = torch.Generator().manual_seed(0)
    x = 1 + 1e-3 * torch.randn(3, 64, dtype=torch.float64, generator=generator)  # fp32 rounds this visibly
    z = torch.randn(3, 64, dtype=torch.float64, generator=generator)
    norm = RMSNorm(64).double()
    ref = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps)
    torch.testing.assert_close(norm(x), ref, rtol=0, atol=1e-14)
    gated = GatedRMSNorm(64, n_groups=2).double()
    y = (x * torch.nn.functional.silu(z)).reshape(3, 2, 32)
    ref = (y / torch.sqrt(y.pow(2).mean(-1, keepdim=True) + gated.eps)).reshape(3, 64)
    torch.testing.assert_close(gated(x, z), ref, rtol=0, atol=1e-14)


def test_decode_attention_scores_fp64() -> None:
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 1, 8, dtype=torch.float64, generator=generator)
    keys = torch.randn(1, 2, 16, 8, dtype=torch.float64, generator=generator)
    values = torch.randn(1, 2, 16, 4, dtype=torch.float64, generator=generator)
    mask = torch.ones(1, 16, dtype=torch.bool)
    scores = q @ keys.transpose(-1, -2) * 0.3
    ref = torch.softmax(scores, -1) @ values
    torch.testing.assert_close(masked_decode_attention(q, keys, values, mask, scale=0.3), ref, rtol=0, atol=1e-14)


def test_fp64_ssd_dt_and_A_are_fp64() -> None:
    model = zoo.build("mamba2-tiny", dtype=torch.float64)
    ssd = model.blocks[0].mixer.ssd
    dt_raw = torch.randn(2, 5, ssd.n_heads, dtype=torch.float64)
    dt = ssd.dt(dt_raw)
    assert dt.dtype == torch.float64 and ssd.A().dtype == torch.float64
    torch.testing.assert_close(dt, torch.log1p(torch.exp(dt_raw + ssd.dt_bias)), rtol=0, atol=1e-14)


def test_fp64_transformer_decode_matches_forward_within_1e10() -> None:
    torch.manual_seed(0)
    model = zoo.build("transformer-tiny", dtype=torch.float64, requires_grad=False).eval()
    tokens = torch.randint(0, 260, (1, 40), generator=torch.Generator().manual_seed(1))
    full = model(tokens)[0]
    cache = model.allocate_cache(1, 40)
    logits = [prefill(model, cache, tokens[:, :24])]
    for index in range(24, 40):
        logits.append(decode(model, cache, tokens[:, index]))
    got = torch.cat(logits[:-1])
    torch.testing.assert_close(got, full[23:39], rtol=0, atol=1e-10)


def test_fp64_model_decodes_with_an_fp64_ssm_state():
    from zoo.inference import decode, prefill

    torch.manual_seed(0)
    model = zoo.build("transmamba-tiny", dtype=torch.float64).eval()
    tokens = torch.randint(0, 260, (2, 40), generator=torch.Generator().manual_seed(1))
    transpoints = [0, 5, 12, 20, 30, 40]
    cache = model.allocate_cache(2, 40, transpoints=transpoints)
    assert all(layer.ssm.dtype == torch.float64 for layer in cache.layers if hasattr(layer, "ssm"))
    with torch.no_grad():
        logits = [prefill(model, cache, tokens[:, :16])]
        logits += [decode(model, cache, tokens[:, i]) for i in range(16, 39)]
        ref = model(tokens, transpoints=transpoints)[:, 15:-1]
    got = torch.stack(logits, dim=1)
    # fp32 anywhere on this path leaves ~1e-7; fp64 throughout stays near 1e-12
    assert ((got - ref).norm() / ref.norm()).item() < 1e-10
