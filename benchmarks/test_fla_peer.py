"""The SSD -> simple-GLA mapping of benchmarks/fla_peer.py against zoo's sequential SSD reference:
through a simple-GLA recurrence written here, and through fla's own naive implementations
(skipped when fla is not importable)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fla_peer import KernelOnly, fla_ssd  # noqa: E402

from zoo.ops.ssd.reference import ssd_scan  # noqa: E402
from zoo.testing import rel_err  # noqa: E402

CASES = [(2, 37, 4, 8, 6, 2), (1, 50, 6, 4, 8, 3)]  # B, T (not a multiple of the chunk), H, P, N, G


def _ids(case: tuple[int, ...]) -> str:
    return "B{}-T{}-H{}-P{}-N{}-G{}".format(*case)


def _problem(batch: int, seq_len: int, heads: int, head_dim: int, state_dim: int, groups: int, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seq_len)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=dtype)

    return {
        "x": randn(batch, seq_len, heads, head_dim),
        "dt": torch.nn.functional.softplus(randn(batch, seq_len, heads) - 1.0),
        "A": -torch.exp(torch.rand(heads, generator=gen, dtype=dtype) * 2 - 1),
        "B": randn(batch, seq_len, groups, state_dim) / state_dim**0.5,
        "C": randn(batch, seq_len, groups, state_dim) / state_dim**0.5,
        "D": randn(heads),
        "initial_state": randn(batch, heads, head_dim, state_dim),
    }


def _reference(p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return ssd_scan(
        p["x"], p["dt"], p["A"], p["B"], p["C"], D=p["D"], initial_state=p["initial_state"], return_final_state=True
    )


def simple_gla_recurrence(q, k, v, g, *, scale, initial_state=None, output_final_state=False):
    """S_t = exp(g_t) S_{t-1} + k_t v_t^T, o_t = scale * q_t^T S_t; [B,T,H,K] in, state [B,H,K,V]."""
    batch, seq_len, heads, key_dim = q.shape
    state = q.new_zeros(batch, heads, key_dim, v.shape[-1]) if initial_state is None else initial_state.to(q.dtype)
    outputs = []
    for t in range(seq_len):
        state = g[:, t].exp()[..., None, None] * state + k[:, t, :, :, None] * v[:, t, :, None, :]
        outputs.append(scale * torch.einsum("bhk,bhkv->bhv", q[:, t], state))
    return torch.stack(outputs, dim=1), (state if output_final_state else None)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_the_mapping_through_a_simple_gla_recurrence_is_the_ssd(case) -> None:
    p = _problem(*case)
    y_ref, state_ref = _reference(p)
    kwargs = {k: p[k] for k in ("D", "initial_state")}
    y, state = fla_ssd(
        p["x"], p["dt"], p["A"], p["B"], p["C"], **kwargs, return_final_state=True, kernel=simple_gla_recurrence
    )
    assert rel_err(y, y_ref) < 1e-5 and rel_err(state, state_ref) < 1e-5  # fp32 state (ours), fp64 inputs


def test_the_scale_must_be_one() -> None:
    """fla's default scale (1/sqrt(K)) is not the SSD: the wrapper's scale=1.0 is what makes it so."""
    p = _problem(*CASES[0])
    y_ref, _ = _reference(p)

    def default_scale(q, k, v, g, *, scale, **kwargs):
        return simple_gla_recurrence(q, k, v, g, scale=q.shape[-1] ** -0.5, **kwargs)

    kwargs = {k: p[k] for k in ("D", "initial_state")}
    y = fla_ssd(p["x"], p["dt"], p["A"], p["B"], p["C"], **kwargs, kernel=default_scale)
    assert rel_err(y, y_ref) > 0.1


@pytest.fixture(scope="module")
def fla_naive():
    try:  # importing fla loads all of it: tens of seconds on a small CPU
        from fla.ops.simple_gla import naive
    except Exception as error:
        pytest.skip(f"fla is not importable: {type(error).__name__}: {error}")
    return naive


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("which", ["naive_chunk_simple_gla", "naive_recurrent_simple_gla"])
def test_the_mapping_through_fla_naive_kernels_is_the_ssd(fla_naive, case, which) -> None:
    p = _problem(*case)
    y_ref, state_ref = _reference(p)
    kernel = getattr(fla_naive, which)
    options = {"chunk_size": 16} if which == "naive_chunk_simple_gla" else {}
    y, state = fla_ssd(
        p["x"],
        p["dt"],
        p["A"],
        p["B"],
        p["C"],
        D=p["D"],
        initial_state=p["initial_state"],
        return_final_state=True,
        kernel=kernel,
        **options,
    )
    # fla's naive kernels compute in fp32
    assert rel_err(y, y_ref) < 1e-5, rel_err(y, y_ref)
    assert rel_err(state, state_ref) < 1e-5, rel_err(state, state_ref)


def _bf16_inputs(batch: int, seq_len: int, *, grad: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    p = _problem(batch, seq_len, 4, 8, 16, 2, dtype=torch.float32)
    return {k: p[k].to(torch.bfloat16) if k in ("x", "B", "C") else p[k] for k in ("x", "dt", "A", "B", "C", "D")}


@pytest.mark.slow
def test_the_parity_rows_pass_through_a_correct_kernel_and_fail_a_wrong_one(fla_naive) -> None:
    from fla_peer import PEER, parity

    report: list[str] = []
    assert parity(_bf16_inputs, [(1, 40), (2, 17)], report, kernel=fla_naive.naive_recurrent_simple_gla)
    assert len(report) == 2 and all(row.startswith(f"| {PEER} | B") and row.endswith("| pass |") for row in report)

    def no_decay(q, k, v, g, **kwargs):
        return fla_naive.naive_recurrent_simple_gla(q, k, v, torch.zeros_like(g), **kwargs)

    report = []
    assert not parity(_bf16_inputs, [(1, 40)], report, kernel=no_decay)
    assert "FAIL y" in report[0]


def test_forward_only_peers_show_n_a_for_forward_backward() -> None:
    from gpu_ssd import render

    results = {("ours", 1, 64): (1.0, 2.0), ("peer", 1, 64): (0.5, float("nan"))}
    text = render([], results, ["ours", "peer"], [(1, 64)], (1, 64), 1e12, forward_only={"peer"})
    assert "| 1 | 64 | 1.000 | 2.000 | 0.500 | n/a |" in text


def test_the_report_ranks_our_forward_against_forward_only_peers_and_the_floor_at_every_shape() -> None:
    from gpu_ssd import render
    from ssd_bench_common import fwd_bytes

    results = {("triton c64", 8, 64): (1.0, 2.0), ("peer", 8, 64): (1.5, float("nan"))}
    bandwidth = fwd_bytes(8, 64) * 1e3 / 0.25  # a floor of 0.25 ms at B8 T64
    text = render([], results, ["triton c64", "peer"], [(8, 64), (1, 32)], (8, 64), bandwidth, forward_only={"peer"})
    assert "| 8 | 64 | 1.50x |" in text  # the peer's forward takes 1.5x ours
    assert "| 1 | 32 | - |" in text and "nan" not in text.split("byte floor at every shape")[1]  # unmeasured: no ratio
    assert "| 8 | 64 | 0.250 | 4.00x | 6.00x |" in text


def test_shapes_parse_and_a_bad_one_names_the_form() -> None:
    import argparse

    from gpu_ssd import parse_shapes

    assert parse_shapes("8x8192,1x65536") == [(8, 8192), (1, 65536)]
    with pytest.raises(argparse.ArgumentTypeError, match="BATCHxLENGTH"):
        parse_shapes("8x")


def test_the_kernel_alone_prepares_once_per_input_set_and_is_the_ssd_without_d() -> None:
    p = _problem(*CASES[1])
    calls = []

    def counting(q, k, v, g, **kwargs):
        calls.append(q.data_ptr())
        return simple_gla_recurrence(q, k, v, g, **kwargs)

    alone = KernelOnly(counting)
    args = [p[k] for k in ("x", "dt", "A", "B", "C")]
    first, again = alone(*args, D=p["D"]), alone(*args, D=p["D"])
    assert len(set(calls)) == 1 and len(calls) == 2  # q, k, v, g made once, the kernel run twice
    y_ref = ssd_scan(*args)  # no D skip, no initial state
    assert torch.equal(first, again) and rel_err(first, y_ref) < 1e-5
    other = {**p, "x": p["x"] * 2}
    alone(*[other[k] for k in ("x", "dt", "A", "B", "C")])
    assert len(set(calls)) == 2  # new inputs are prepared again
