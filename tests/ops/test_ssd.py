"""Chunked SSD and chunked converter against the sequential scan (the definition)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch._dynamo.testing import CompileCounter

from zoo.ops.ssd import converter_chunked, converter_scan, ssd_chunked, ssd_scan
from zoo.testing import SSMCase, rel_err, ssm_inputs

SSM_ARGS = ("x", "dt", "A", "B", "C")

# (case, chunk_size): odd T, T below / at / across chunk boundaries, G in {1, 2, H}.
CHUNKED_CASES = [
    (SSMCase(2, 63, 4, 16, 8, 2), 16),
    (SSMCase(2, 63, 4, 16, 8, 2, initial_state=False), 16),
    (SSMCase(1, 64, 4, 8, 8, 1), 16),
    (SSMCase(2, 65, 4, 8, 8, 4), 16),
    (SSMCase(1, 100, 2, 8, 16, 2, skip_D=True), 32),
    (SSMCase(1, 130, 4, 8, 8, 2), 64),
    (SSMCase(2, 7, 4, 8, 8, 2), 64),
    (SSMCase(1, 33, 3, 4, 4, 1, initial_state=False), 1),
    (SSMCase(1, 1, 4, 8, 8, 2), 8),
    (SSMCase(1, 0, 2, 8, 8, 1), 16),
]


def _id(item: tuple[SSMCase, int]) -> str:
    case, chunk_size = item
    return f"{case.id}-cs{chunk_size}"


def _leaves(inputs: dict, dtype: torch.dtype) -> dict:
    return {k: None if v is None else v.to(dtype).requires_grad_() for k, v in inputs.items()}


def _run(fn, inputs: dict, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    return fn(
        *(inputs[a] for a in SSM_ARGS),
        D=inputs["D"],
        initial_state=inputs["initial_state"],
        return_final_state=True,
        **kwargs,
    )


def _grads(
    outputs: tuple[torch.Tensor, ...],
    cotangents: tuple[torch.Tensor, ...],
    inputs: dict,
) -> dict:
    names = [n for n, t in inputs.items() if t is not None]
    loss = sum((o.double() * c).sum() for o, c in zip(outputs, cotangents, strict=True))
    grads = torch.autograd.grad(loss, [inputs[n] for n in names], allow_unused=True)
    return dict(zip(names, grads, strict=True))


@pytest.mark.parametrize("item", CHUNKED_CASES, ids=[_id(c) for c in CHUNKED_CASES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_chunked_matches_scan(item: tuple[SSMCase, int], dtype: torch.dtype) -> None:
    case, chunk_size = item
    raw = ssm_inputs(case, seed=case.seq_len)
    cast = {k: None if v is None else v.to(dtype) for k, v in raw.items()}
    ref, mine = _leaves(cast, torch.float64), _leaves(cast, dtype)
    y_ref, state_ref = _run(ssd_scan, ref)
    y, state = _run(ssd_chunked, mine, chunk_size=chunk_size)
    tol = 1e-5 if dtype == torch.float32 else 1e-11
    assert y.dtype == dtype and state.dtype == dtype
    assert rel_err(y, y_ref) < tol
    assert rel_err(state, state_ref) < tol
    cotangents = (torch.randn_like(y_ref), torch.randn_like(state_ref))
    expected = _grads((y_ref, state_ref), cotangents, ref)
    actual = _grads((y, state), cotangents, mine)
    for name, grad in expected.items():
        if grad is None:  # T = 0: the reference never touches x, dt, B, C
            assert actual[name] is None or actual[name].abs().sum() == 0, name
            continue
        assert rel_err(actual[name], grad) < tol, f"d{name}: {rel_err(actual[name], grad):.3g}"


def test_chunked_output_without_final_state_is_a_tensor() -> None:
    raw = ssm_inputs(SSMCase(1, 20, 2, 4, 4, 1))
    y = ssd_chunked(*(raw[a] for a in SSM_ARGS), chunk_size=8)
    assert isinstance(y, torch.Tensor) and y.shape == raw["x"].shape


@pytest.mark.parametrize("chunk_size", [16, 64])
def test_strong_decay_stays_finite(chunk_size: int) -> None:
    # dt*A of -200 per token: cumulative sums reach -1e4; exp of a positive number would overflow.
    raw = ssm_inputs(SSMCase(1, 70, 2, 4, 4, 1))
    raw["dt"] = torch.full_like(raw["dt"], 20.0)
    raw["A"] = torch.full_like(raw["A"], -10.0)
    inputs = _leaves(raw, torch.float32)
    y, state = _run(ssd_chunked, inputs, chunk_size=chunk_size)
    (y.sum() + state.sum()).backward()
    for name, tensor in inputs.items():
        assert tensor is None or torch.isfinite(tensor.grad).all(), name
    y_ref, state_ref = _run(ssd_scan, _leaves(raw, torch.float64))
    assert rel_err(y, y_ref) < 1e-5 and rel_err(state, state_ref) < 1e-5


CONVERTER_CASES = [
    SSMCase(2, 63, 4, 16, 8, 2),
    SSMCase(1, 40, 4, 8, 8, 4, initial_state=False),
    SSMCase(2, 1, 2, 8, 8, 1),
    SSMCase(1, 0, 2, 8, 8, 1),
    SSMCase(1, 0, 2, 8, 8, 1, initial_state=False),
]


@pytest.mark.parametrize("case", CONVERTER_CASES, ids=[c.id for c in CONVERTER_CASES])
@pytest.mark.parametrize("chunk_size", [16, 64], ids=["cs16", "cs64"])
def test_converters_equal_final_state_of_scan(case: SSMCase, chunk_size: int) -> None:
    raw = ssm_inputs(case, seed=1)
    _, final = ssd_scan(
        *(raw[a] for a in SSM_ARGS),
        initial_state=raw["initial_state"],
        return_final_state=True,
    )
    args = (raw["B"], raw["x"], raw["dt"], raw["A"])
    by_scan = converter_scan(*args, initial_state=raw["initial_state"])
    by_chunks = converter_chunked(*args, initial_state=raw["initial_state"], chunk_size=chunk_size)
    assert rel_err(by_scan, final) < 1e-12 and rel_err(by_chunks, final) < 1e-12
    fp32 = converter_chunked(
        *(a.float() for a in args),
        chunk_size=chunk_size,
        initial_state=None if raw["initial_state"] is None else raw["initial_state"].float(),
    )
    assert fp32.dtype == torch.float32 and rel_err(fp32, final) < 1e-5


def test_converter_folds_a_prefix_in_pieces() -> None:
    """A decode cache may convert a prefix piece by piece, passing the state along."""
    raw = ssm_inputs(SSMCase(2, 50, 4, 8, 8, 2))
    args = (raw["B"], raw["x"], raw["dt"])
    whole = converter_chunked(*args, raw["A"], initial_state=raw["initial_state"], chunk_size=16)
    state = raw["initial_state"]
    for start, stop in [(0, 7), (7, 7), (7, 40), (40, 50)]:
        state = converter_chunked(
            *(a[:, start:stop] for a in args),
            raw["A"],
            initial_state=state,
            chunk_size=16,
        )
    assert rel_err(state, whole) < 1e-12


@settings(max_examples=20, deadline=None)
@given(
    seq_len=st.integers(0, 40),
    chunk_size=st.integers(1, 20),
    groups=st.sampled_from([1, 2, 4]),
    with_state=st.booleans(),
)
def test_chunked_matches_scan_randomized(seq_len: int, chunk_size: int, groups: int, with_state: bool) -> None:
    raw = ssm_inputs(SSMCase(1, seq_len, 4, 4, 4, groups, initial_state=with_state), seed=seq_len)
    y_ref, state_ref = _run(ssd_scan, raw)
    y, state = _run(ssd_chunked, raw, chunk_size=chunk_size)
    assert rel_err(y, y_ref) < 1e-11 and rel_err(state, state_ref) < 1e-11


@pytest.mark.slow
def test_chunked_compiles_fullgraph_dynamic_without_recompiling() -> None:
    counter = CompileCounter()
    compiled = torch.compile(ssd_chunked, fullgraph=True, dynamic=True, backend=counter)
    for seq_len in (
        37,
        50,
    ):  # both > 1 chunk (a single chunk specialises, as size 1 does)
        raw = {k: v.float() for k, v in ssm_inputs(SSMCase(2, seq_len, 4, 8, 8, 2)).items()}
        y, state = _run(compiled, raw, chunk_size=16)
        y_ref, state_ref = _run(ssd_chunked, raw, chunk_size=16)
        assert rel_err(y, y_ref) < 1e-6 and rel_err(state, state_ref) < 1e-6
    assert counter.frame_count == 1


@pytest.mark.slow
def test_converter_compiles_fullgraph_dynamic_without_recompiling() -> None:
    counter = CompileCounter()
    compiled = torch.compile(converter_chunked, fullgraph=True, dynamic=True, backend=counter)
    for seq_len in (37, 50):
        raw = {k: v.float() for k, v in ssm_inputs(SSMCase(2, seq_len, 4, 8, 8, 2)).items()}
        args = (raw["B"], raw["x"], raw["dt"], raw["A"])
        state = compiled(*args, initial_state=raw["initial_state"], chunk_size=16)
        assert (
            rel_err(
                state,
                converter_chunked(*args, initial_state=raw["initial_state"], chunk_size=16),
            )
            < 1e-6
        )
    assert counter.frame_count == 1
