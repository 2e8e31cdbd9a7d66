"""Rotary embedding: a rotation (norm kept), relative (q.k depends on the offset only), decode-ready."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.ops.rope import rotary
from zoo.testing import rel_err


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_rotation_preserves_norm() -> None:
    x = _randn(2, 9, 3, 16)
    rotated = rotary(x, torch.arange(100, 109))
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))


def test_position_zero_is_identity() -> None:
    x = _randn(1, 1, 2, 8)
    torch.testing.assert_close(rotary(x, torch.zeros(1, dtype=torch.long)), x)


@settings(max_examples=25, deadline=None)
@given(
    query_pos=st.integers(0, 4000),
    key_pos=st.integers(0, 4000),
    shift=st.integers(0, 4000),
)
def test_dot_product_depends_only_on_position_difference(query_pos: int, key_pos: int, shift: int) -> None:
    q, k = _randn(1, 1, 1, 32, seed=1), _randn(1, 1, 1, 32, seed=2)

    def score(m: int, n: int) -> torch.Tensor:
        return (rotary(q, torch.tensor([m])) * rotary(k, torch.tensor([n]))).sum()

    torch.testing.assert_close(
        score(query_pos, key_pos),
        score(query_pos + shift, key_pos + shift),
        atol=2e-3,
        rtol=2e-3,
    )


def test_decode_offsets_match_the_full_sequence() -> None:
    x = _randn(2, 12, 4, 8)
    full = rotary(x, torch.arange(12))
    for t in (0, 5, 11):
        torch.testing.assert_close(rotary(x[:, t : t + 1], torch.tensor([t])), full[:, t : t + 1])


def test_per_batch_positions() -> None:
    x = _randn(2, 6, 2, 8)
    positions = torch.stack([torch.arange(6), torch.arange(6) + 40])
    together = rotary(x, positions)
    torch.testing.assert_close(together[0], rotary(x[:1], positions[0])[0])
    torch.testing.assert_close(together[1], rotary(x[1:], positions[1])[0])


def test_half_split_layout() -> None:
    """Channel i pairs with channel i + D/2 (GPT-NeoX layout), angle = position * theta^(-2i/D)."""
    x = torch.zeros(1, 1, 1, 4)
    x[..., 1] = 1.0
    out = rotary(x, torch.tensor([3]), theta=100.0)
    angle = torch.tensor(3.0 * 100.0 ** (-2 / 4))
    expected = torch.tensor([0.0, torch.cos(angle), 0.0, torch.sin(angle)])
    torch.testing.assert_close(out.flatten(), expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_dtype_is_kept(dtype: torch.dtype) -> None:
    x = _randn(1, 5, 2, 8).to(dtype)
    out = rotary(x, torch.arange(5))
    assert out.dtype == dtype
    assert rel_err(out, rotary(x.double(), torch.arange(5))) < 1e-2


def test_odd_dim_is_rejected() -> None:
    with pytest.raises(ValueError, match="even"):
        rotary(torch.zeros(1, 2, 1, 5), torch.arange(2))


def test_compiles_fullgraph_dynamic() -> None:
    compiled = torch.compile(rotary, fullgraph=True, dynamic=True, backend="eager")
    for length, offset in [(7, 0), (1, 30)]:
        x = _randn(2, length, 3, 8)
        positions = torch.arange(offset, offset + length)
        torch.testing.assert_close(compiled(x, positions), rotary(x, positions))


def test_compiled_rotary_computes_the_table_once() -> None:
    """Under torch.compile the cos/sin table is its own op ([T, D/2], computed once) rather
    than plain ops that inductor would fuse into the rotation and recompute per element;
    eager and compiled results agree."""
    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm.code)
        return gm.forward

    x = _randn(1, 7, 3, 8)
    positions = torch.arange(5, 12)
    compiled = torch.compile(rotary, fullgraph=True, backend=record)
    torch.testing.assert_close(compiled(x, positions), rotary(x, positions))
    assert "zoo.rotary_cos_sin" in graphs[0] and "torch.cos" not in graphs[0]
