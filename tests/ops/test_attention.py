"""Grouped attention: reference against a per-head loop, SDPA and Flex against the reference."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import partial

import pytest
import torch

from zoo.ops.attention import (
    flex_grouped_attention,
    grouped_attention,
    sdpa_grouped_attention,
)
from zoo.ops.attention.flex import flex_function
from zoo.ops.attention.sdpa import resolve_grouping, slice_heads
from zoo.testing import ATTENTION_CASES, AttentionCase, attention_inputs, rel_err


def per_head_loop(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, scale: float, causal: bool) -> torch.Tensor:
    """The plainest possible definition: one softmax per value head, explicit bottom-right mask."""
    n_queries, n_keys, n_groups, n_heads = (
        q.shape[1],
        k.shape[1],
        k.shape[2],
        v.shape[2],
    )
    outputs = []
    for head in range(n_heads):
        group = head // (n_heads // n_groups)
        scores = q[:, :, group] @ k[:, :, group].transpose(-1, -2) * scale
        if causal:
            allowed = torch.ones(n_queries, n_keys, dtype=torch.bool).tril(diagonal=n_keys - n_queries)
            scores = scores.masked_fill(~allowed, float("-inf"))
        outputs.append(torch.softmax(scores, dim=-1) @ v[:, :, head])
    return torch.stack(outputs, dim=2)


IMPLEMENTATIONS: dict[str, Callable] = {
    "sdpa-expand": partial(sdpa_grouped_attention, grouping="expand"),
    "sdpa-fold_values": partial(sdpa_grouped_attention, grouping="fold_values"),
    "flex-eager-expand": partial(flex_grouped_attention, grouping="expand"),
    "flex-eager-fold_values": partial(flex_grouped_attention, grouping="fold_values"),
    "sdpa-fold_slices": partial(sdpa_grouped_attention, grouping="fold_slices"),
    "flex-eager-fold_slices": partial(flex_grouped_attention, grouping="fold_slices"),
}
FORWARD_ONLY = {
    "flex-eager-expand",
    "flex-eager-fold_values",
    "flex-eager-fold_slices",
}  # no Flex backward on CPU
# fold_slices needs qk_dim a multiple of head_dim and R a multiple of their ratio; this
# case has two slices of two value heads per group (the others have one slice, or none).
SLICED_CASE = AttentionCase(2, 11, 11, 2, 8, 16, 8)


def _applies(name: str, case: AttentionCase) -> bool:
    return "fold_slices" not in name or bool(slice_heads(case.n_groups, case.n_heads, case.qk_dim, case.head_dim))


@pytest.fixture(autouse=True)
def _quiet_flex_eager_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
        yield


@pytest.mark.parametrize("case", ATTENTION_CASES, ids=[c.id for c in ATTENTION_CASES])
def test_reference_matches_per_head_loop(case: AttentionCase) -> None:
    inputs = attention_inputs(case)
    scale = case.qk_dim**-0.5
    expected = per_head_loop(*inputs.values(), scale=scale, causal=case.causal)
    assert (
        rel_err(
            grouped_attention(*inputs.values(), scale=scale, causal=case.causal),
            expected,
        )
        < 1e-12
    )


@pytest.mark.parametrize("case", [*ATTENTION_CASES, SLICED_CASE], ids=[c.id for c in (*ATTENTION_CASES, SLICED_CASE)])
@pytest.mark.parametrize("name", list(IMPLEMENTATIONS))
def test_implementation_matches_reference(name: str, case: AttentionCase) -> None:
    if not _applies(name, case):
        pytest.skip("fold_slices does not apply to this shape (test_fold_slices_layout_and_rejected_shapes)")
    grads = name not in FORWARD_ONLY
    raw = attention_inputs(case)
    ref = {k: t.clone().requires_grad_() for k, t in raw.items()}
    mine = {k: t.float().requires_grad_(grads) for k, t in raw.items()}
    scale = case.qk_dim**-0.5
    expected = grouped_attention(*ref.values(), scale=scale, causal=case.causal)
    actual = IMPLEMENTATIONS[name](*mine.values(), scale=scale, causal=case.causal)
    assert actual.dtype == torch.float32
    assert rel_err(actual, expected) < 1e-5
    if grads:
        cotangent = torch.randn_like(expected)
        expected_grads = torch.autograd.grad((expected * cotangent).sum(), list(ref.values()))
        actual_grads = torch.autograd.grad((actual.double() * cotangent).sum(), list(mine.values()))
        for key, a, e in zip(ref, actual_grads, expected_grads, strict=True):
            assert rel_err(a, e) < 1e-5, f"d{key}"


@pytest.mark.parametrize("name", ["reference", *IMPLEMENTATIONS])
@pytest.mark.parametrize("n_queries", [1, 4, 13])
def test_last_queries_equal_last_rows_of_full_attention(name: str, n_queries: int) -> None:
    """Bottom-right alignment: T queries over S keys are the last T rows of the S x S result."""
    fn = grouped_attention if name == "reference" else IMPLEMENTATIONS[name]
    full = attention_inputs(AttentionCase(2, 13, 13, 2, 4, 8, 8))
    q, k, v = (t.float() for t in full.values())
    whole = fn(q, k, v, scale=0.3)
    tail = fn(q[:, -n_queries:], k, v, scale=0.3)
    assert rel_err(tail, whole[:, -n_queries:]) < 1e-6


def test_causal_with_more_queries_than_keys_is_rejected() -> None:
    q, k, v = attention_inputs(AttentionCase(1, 5, 3, 1, 2, 8, 8, causal=False)).values()
    for fn in (grouped_attention, sdpa_grouped_attention):
        with pytest.raises(ValueError, match="T <= S"):
            fn(q, k, v, scale=1.0)


def test_fold_slices_layout_and_rejected_shapes() -> None:
    assert slice_heads(2, 8, qk_dim=16, head_dim=8) == 2  # 4 heads per group -> 2 slices of 2
    assert slice_heads(8, 48, qk_dim=128, head_dim=64) == 2  # the 400m shape: 3 slices of 2
    assert slice_heads(2, 4, qk_dim=8, head_dim=16) == 0  # q/k narrower than a value head
    assert slice_heads(2, 6, qk_dim=64, head_dim=16) == 0  # 3 heads per group, slices of 4
    q, k, v = attention_inputs(AttentionCase(1, 5, 5, 4, 4, 8, 16)).values()
    for fn in (sdpa_grouped_attention, flex_grouped_attention):
        with pytest.raises(ValueError, match="fold_slices.*use grouping='expand'"):
            fn(q, k, v, scale=1.0, grouping="fold_slices")


@pytest.mark.parametrize("name", ["sdpa", "flex"])
def test_backends_refuse_fold_slices_where_it_cannot_apply(name: str) -> None:
    from zoo.backends.attention import FlexAttention, SdpaAttention

    backend = (SdpaAttention if name == "sdpa" else FlexAttention)({"grouping": "fold_slices"})
    ok, reason = backend.supports(
        device=torch.device("cpu"),
        dtype=torch.float32,
        requires_grad=0,
        n_groups=8,
        n_heads=48,
        state_dim=128,
        head_dim=64,
    )
    assert ok, reason
    ok, reason = backend.supports(
        device=torch.device("cpu"),
        dtype=torch.float32,
        requires_grad=0,
        n_groups=2,
        n_heads=4,
        state_dim=8,
        head_dim=16,
    )
    assert not ok and "fold_slices" in reason and "head_dim" in reason


def test_flex_on_cuda_checks_the_slice_width_not_the_head_width() -> None:
    """fold_slices feeds flex values as wide as q/k: P = 8 < 16 is fine when N = 32."""
    from zoo.backends.attention import FlexAttention

    ok, reason = FlexAttention({"grouping": "fold_slices"})._cuda_dims_ok(
        torch.device("cuda"), {"n_groups": 2, "n_heads": 8, "state_dim": 32, "head_dim": 8}
    )
    assert ok, reason


def test_auto_grouping() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_grouping("auto", cpu, 2, 8, qk_dim=128, head_dim=64) == "fold_values"
    assert resolve_grouping("auto", cpu, 2, 8, qk_dim=32, head_dim=32) == "expand"
    assert resolve_grouping("auto", cuda, 2, 8, qk_dim=128, head_dim=64) == "fold_slices"
    assert resolve_grouping("auto", cuda, 2, 8, qk_dim=64, head_dim=64) == "expand"  # slices of one head
    assert resolve_grouping("auto", cuda, 2, 6, qk_dim=64, head_dim=16) == "expand"  # does not apply
    assert resolve_grouping("auto", cuda, 8, 8) == "fold_values"
    assert resolve_grouping("expand", cpu, 2, 8) == "expand"


@pytest.mark.slow
def test_compiled_flex_matches_reference() -> None:
    """The fused (inductor) Flex kernel, forward, one shape: a CPU compile takes ~10 s."""
    case = AttentionCase(1, 5, 12, 2, 4, 16, 8)
    raw = attention_inputs(case)
    expected = grouped_attention(*raw.values(), scale=0.25)
    actual = flex_grouped_attention(
        *(t.float() for t in raw.values()),
        scale=0.25,
        flex=flex_function(compiled=True),
    )
    assert rel_err(actual, expected) < 1e-5


@pytest.mark.parametrize("grouping", ["expand", "fold_values"])
def test_sdpa_compiles_fullgraph_for_prefill_and_decode(grouping: str) -> None:
    from torch._dynamo.testing import CompileCounter

    counter = CompileCounter()
    compiled = torch.compile(
        partial(sdpa_grouped_attention, grouping=grouping),
        fullgraph=True,
        backend=counter,
    )
    for n_queries, n_keys in [(9, 9), (3, 11)]:
        q, k, v = (t.float() for t in attention_inputs(AttentionCase(1, n_queries, n_keys, 2, 4, 8, 8)).values())
        assert rel_err(compiled(q, k, v, scale=0.3), grouped_attention(q, k, v, scale=0.3)) < 1e-6
    assert counter.frame_count >= 1
