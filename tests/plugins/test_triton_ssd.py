"""The Triton SSD plugin against the references (CPU: Triton interpreter, small shapes).

Outputs, every gradient and final states, through the zoo's conformance kit, plus the
fused TransMamba call (converter + suffix scan) at TransPoints inside, on and off chunk
boundaries.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from zoo.ops.ssd.reference import converter_scan, ssd_scan
from zoo.registry import CONVERTER, SSM
from zoo.testing import (
    SSMCase,
    check_converter_backend,
    check_ssm_backend,
    rel_err,
    ssm_inputs,
    tolerance,
)
from zoo_plugins.triton_ssd import TritonConverter, TritonSSM, transmamba_ssd

available, why = TritonSSM.is_available()
pytestmark = pytest.mark.skipif(not available, reason=f"ssm 'triton' unavailable: {why}")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CHUNK = 16
# Odd lengths, a partial last chunk, G in {1, 2, H}, T = 1 and T = 0.
CASES = (
    SSMCase(1, 37, 4, 8, 16, 2),
    SSMCase(2, 20, 2, 16, 8, 1, initial_state=False, skip_D=True),
    SSMCase(1, 16, 2, 8, 8, 2),
    SSMCase(1, 1, 2, 8, 8, 1),
    SSMCase(1, 0, 2, 8, 8, 1),
)
# More chunks than the state pass takes per step (8), and N = 40 (padded; two N blocks in
# the dB/dC kernel). Dtype-blind index logic, checked in fp32: in bf16 their dA (a sum over
# all tokens, with cancellation) lands at 3-4e-2, just over the kit's 3e-2, because state
# tiles are rounded to bf16 for the tensor-core dots.
FP32_CASES = CASES + (SSMCase(1, 150, 2, 8, 8, 1), SSMCase(1, 37, 4, 8, 40, 2))
# fp32 on the GPU: dA (a sum over every token, with cancellation) lands at about 1e-5 of its
# norm, the kit's fp32 bound, as the order of the GPU's reductions moves it; it is held to 2e-5.
# The interpreter keeps the kit's 1e-5.
FP32_TOL = 2e-5 if DEVICE == "cuda" else None


# chunks per segment: 1 (every chunk its own segment), 2, 3 (a short last segment) and
# 1000 (one segment: no segment pass at all).
@pytest.mark.slow
@pytest.mark.parametrize("per_segment", [1, 2, 3, 1000], ids=str)
def test_segment_splits_match_reference(per_segment: int) -> None:
    params = {"chunk_size": CHUNK, "tuning": {"chunks_per_segment": per_segment}}
    cases = (SSMCase(1, 150, 2, 8, 8, 1), SSMCase(2, 37, 4, 32, 16, 2), SSMCase(1, 16, 2, 8, 8, 2))
    check_ssm_backend(TritonSSM(params), device=DEVICE, dtype=torch.float32, cases=cases, tol=FP32_TOL)
    check_converter_backend(TritonConverter(params), device=DEVICE, dtype=torch.float32, cases=cases, tol=FP32_TOL)


# Cut into one-row batch slices (a tiny int32 limit), forward and backward match the reference.
@pytest.mark.slow
def test_batch_slices_match_reference(monkeypatch) -> None:
    from zoo_plugins.triton_ssd import plan

    cases = (SSMCase(3, 37, 4, 8, 16, 2), SSMCase(2, 20, 2, 16, 8, 1, initial_state=False, skip_D=True))
    monkeypatch.setattr(plan, "INT32_LIMIT", 1636)  # a row of the first case: 48 padded tokens x 4 x 8 = 1536
    assert len(plan.batch_slices(torch.empty(3, 37, 4, 8), 2, 16, CHUNK, True)) == 3
    check_ssm_backend(TritonSSM({"chunk_size": CHUNK}), device=DEVICE, dtype=torch.float32, cases=cases, tol=FP32_TOL)
    check_converter_backend(
        TritonConverter({"chunk_size": CHUNK}), device=DEVICE, dtype=torch.float32, cases=cases, tol=FP32_TOL
    )


def test_empty_batch_scans_to_empty_outputs_and_gradients() -> None:
    from zoo_plugins.triton_ssd import ssd

    case = SSMCase(1, 40, 2, 8, 8, 1)
    inputs = ssm_inputs(case, seed=0)
    names = ("x", "dt", "B", "C")
    empty = {
        k: (v[:0] if k in names else v).to(DEVICE, torch.float32).requires_grad_(True)
        for k, v in inputs.items()
        if k in (*names, "A", "D")
    }
    y, state = ssd(
        empty["x"],
        empty["dt"],
        empty["A"],
        empty["B"],
        empty["C"],
        D=empty["D"],
        return_final_state=True,
        chunk_size=CHUNK,
    )
    assert y.shape == empty["x"].shape and state.shape[0] == 0
    (y.sum() + state.sum()).backward()
    assert empty["x"].grad.shape == empty["x"].shape and float(empty["A"].grad.abs().sum()) == 0.0


@pytest.mark.parametrize("path", ["eager", "op"])
@pytest.mark.parametrize("use", ["y", "state"])
def test_backward_gets_no_zero_filled_gradients(monkeypatch, use: str, path: str) -> None:
    """An output that gets no gradient (the saved chunk states always; y or the final state
    when unused) reaches the backward as None, not as a zero tensor autograd filled (at
    B=1, T=64K the states alone are 805 MB), and the gradients still match the reference.
    Both paths: ``eager`` (``ssd()`` outside torch.compile: ``ops._EagerSSD``) and ``op``
    (the custom op with its registered autograd formula, as compiled graphs call it)."""
    from zoo_plugins.triton_ssd import ops

    seen = []
    backward = "_bwd_eager" if path == "eager" else "ssd_bwd"  # what each path's backward calls
    real_bwd = getattr(ops, backward)

    def spy(dy, dfinal_state, *rest):
        seen.append((dy is None, dfinal_state is None))
        return real_bwd(dy, dfinal_state, *rest)

    monkeypatch.setattr(ops, backward, spy)
    inputs = ssm_inputs(SSMCase(1, 37, 4, 8, 16, 2), seed=1)
    names = ("x", "dt", "A", "B", "C", "D", "initial_state")
    mine = {k: inputs[k].to(DEVICE, torch.float32).requires_grad_(True) for k in names}
    ref = {k: inputs[k].clone().requires_grad_(True) for k in names}
    call = ops.scan if path == "eager" else ops.ssd_fwd
    y, state, _ = call(*(mine[k] for k in names), 0, CHUNK, True)
    y_ref, state_ref = ssd_scan(
        *(ref[k] for k in ("x", "dt", "A", "B", "C")),
        D=ref["D"],
        initial_state=ref["initial_state"],
        return_final_state=True,
    )
    weight = torch.randn(y_ref.shape if use == "y" else state_ref.shape, dtype=torch.float64)
    ((y if use == "y" else state).double() * weight.to(DEVICE)).sum().backward()
    ((y_ref if use == "y" else state_ref) * weight).sum().backward()
    assert seen == [(use != "y", use != "state")]
    for k in names:
        if ref[k].grad is None:  # D when y is unused: no path to the loss
            assert mine[k].grad is None or not mine[k].grad.any(), k
        else:
            assert rel_err(mine[k].grad.double().cpu(), ref[k].grad) < tolerance(torch.float32), k


@pytest.mark.parametrize("path", ["eager", "op"])
@pytest.mark.parametrize(
    ("out_start", "per_segment"), [(0, 1), (21, 1000), (21, 1)], ids=["scan-seg1", "tp21", "tp21-seg1"]
)
def test_recomputed_states_give_the_saved_states_gradients_exactly(path: str, out_start: int, per_segment: int) -> None:
    """``save_states=False`` under autograd keeps no chunk states (no [B, H, nc, P, N] tensor
    is saved) and the backward rebuilds them with the forward's own walk: every gradient
    equals the saved-states run's bit for bit, at a TransPoint and from an initial state."""
    from zoo_plugins.triton_ssd import ops
    from zoo_plugins.triton_ssd.tuning import Tuning

    inputs = ssm_inputs(SSMCase(1, 37, 4, 8, 16, 2), seed=3)
    names = ("x", "dt", "A", "B", "C", "D", "initial_state")
    call = ops.scan if path == "eager" else ops.ssd_fwd
    tuning = Tuning(chunks_per_segment=per_segment).to_args()
    n_chunks = -(-37 // CHUNK)
    results = {}
    for save in (True, False):
        leaves = {k: inputs[k].to(DEVICE, torch.float32).requires_grad_(True) for k in names}
        saved_shapes = []

        def pack(t, saved_shapes=saved_shapes):
            saved_shapes.append(tuple(t.shape))
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y, state, states = call(*(leaves[k] for k in names), out_start, CHUNK, save, tuning)
        assert (states.numel() > 0) == save
        assert ((1, 4, n_chunks, 8, 16) in saved_shapes) == save, saved_shapes
        gen = torch.Generator().manual_seed(0)
        loss = (y * torch.randn(y.shape, generator=gen).to(DEVICE)).sum() + state.square().sum()
        results[save] = (y, state, torch.autograd.grad(loss, [leaves[k] for k in names]))
    (y_s, state_s, grads_s), (y_r, state_r, grads_r) = results[True], results[False]
    assert torch.equal(y_s, y_r) and torch.equal(state_s, state_r)
    for name, a, b in zip(names, grads_s, grads_r, strict=True):
        assert torch.equal(a, b), f"d{name} differs when the states are recomputed"


def test_states_param_reaches_the_calls() -> None:
    from pydantic import ValidationError

    assert TritonSSM({}).options["recompute_states"] is True  # the default
    assert TritonSSM({"states": "save"}).options["recompute_states"] is False
    assert TritonSSM({"states": "recompute"}).options["recompute_states"] is True
    assert TritonConverter({"states": "recompute"}).options["recompute_states"] is True
    with pytest.raises(ValidationError, match="states"):
        TritonSSM({"states": "drop"})


@pytest.mark.slow
def test_fp16_saves_fp32_states_and_matches_fp32() -> None:
    from zoo_plugins.triton_ssd import plan, ssd

    inputs = ssm_inputs(SSMCase(1, 70, 2, 8, 8, 1), seed=1)
    names = ("x", "dt", "A", "B", "C", "D")
    low = ("x", "B", "C")
    results = []
    for dtype in (torch.float16, torch.float32):
        t = {k: inputs[k].to(DEVICE, dtype if k in low else torch.float32).requires_grad_(True) for k in names}
        y = ssd(t["x"], t["dt"], t["A"], t["B"], t["C"], D=t["D"], chunk_size=CHUNK)
        y.float().square().sum().backward()
        results.append([y.float(), *(t[k].grad.float() for k in names)])
    for a, b in zip(*results, strict=True):
        assert ((a - b).norm() / b.norm()).item() < 2e-2
    assert plan.saved_dtype(torch.empty(1, dtype=torch.float16)) == torch.float32
    assert plan.saved_dtype(torch.empty(1, dtype=torch.bfloat16)) == torch.bfloat16


@pytest.mark.slow
def test_non_default_launch_knobs_match_reference() -> None:
    # On the GPU in bf16 (where stages apply: fp32 runs unpipelined); the CPU interpreter
    # ignores warps, stages and register caps, so there it checks only that the knobs pass through.
    knobs = {"warps": 8, "stages": 2, "maxnreg": 128, "chunk_warps": 8, "chunk_stages": 2, "chunk_maxnreg": 128}
    cases = (SSMCase(1, 37, 4, 8, 16, 2), SSMCase(2, 20, 2, 16, 8, 1, initial_state=False, skip_D=True))
    dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float32
    check_ssm_backend(TritonSSM({"chunk_size": CHUNK, "tuning": knobs}), device=DEVICE, dtype=dtype, cases=cases)


def test_registered_under_triton() -> None:
    assert SSM.get("triton").obj is TritonSSM
    assert CONVERTER.get("triton").obj is TritonConverter


def test_import_does_not_load_kernels() -> None:
    code = (
        "import sys, zoo_plugins.triton_ssd as p; from zoo.registry import SSM;"
        "assert not {'zoo_plugins.triton_ssd.kernels', 'zoo_plugins.triton_ssd.kernels_bwd'} & set(sys.modules);"
        "assert SSM.get('triton').obj is p.TritonSSM"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_ssm_matches_reference(dtype: torch.dtype) -> None:
    cases = FP32_CASES if dtype == torch.float32 else CASES
    tol = FP32_TOL if dtype == torch.float32 else None
    check_ssm_backend(TritonSSM({"chunk_size": CHUNK}), device=DEVICE, dtype=dtype, cases=cases, tol=tol)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_converter_matches_reference(dtype: torch.dtype) -> None:
    cases = FP32_CASES if dtype == torch.float32 else CASES
    check_converter_backend(TritonConverter({"chunk_size": CHUNK}), device=DEVICE, dtype=dtype, cases=cases)


@pytest.mark.slow
@pytest.mark.parametrize("per_segment", [None, 1, 1000], ids=["auto", "seg1", "oneseg"])
@pytest.mark.parametrize("transpoint", [0, 7, 16, 21, 37])
def test_transmamba_call_is_converter_then_suffix_scan(transpoint: int, per_segment: int | None) -> None:
    from zoo_plugins.triton_ssd.tuning import Tuning

    case = SSMCase(1, 37, 4, 8, 16, 2)
    inputs = ssm_inputs(case, seed=transpoint)
    names = ("x", "dt", "A", "B", "C", "D", "initial_state")
    ref = {k: inputs[k].clone().requires_grad_(True) for k in names}
    mine = {k: inputs[k].float().to(DEVICE).requires_grad_(True) for k in names}

    prefix = slice(0, transpoint)
    suffix = slice(transpoint, None)
    state = converter_scan(
        ref["B"][:, prefix],
        ref["x"][:, prefix],
        ref["dt"][:, prefix],
        ref["A"],
        initial_state=ref["initial_state"],
    )
    y_ref, final_ref = ssd_scan(
        ref["x"][:, suffix],
        ref["dt"][:, suffix],
        ref["A"],
        ref["B"][:, suffix],
        ref["C"][:, suffix],
        D=ref["D"],
        initial_state=state,
        return_final_state=True,
    )
    y, final = transmamba_ssd(
        mine["x"],
        mine["dt"],
        mine["A"],
        mine["B"],
        mine["C"],
        transpoint=transpoint,
        D=mine["D"],
        initial_state=mine["initial_state"],
        return_final_state=True,
        chunk_size=CHUNK,
        tuning=Tuning(chunks_per_segment=per_segment),
    )
    tol = tolerance(torch.float32)
    assert y.shape == (1, 37 - transpoint, 4, 8)
    assert rel_err(y, y_ref) <= tol
    assert rel_err(final, final_ref) <= tol

    gen = torch.Generator().manual_seed(1)
    w_y = torch.randn(y_ref.shape, generator=gen, dtype=torch.float64)
    w_s = torch.randn(final_ref.shape, generator=gen, dtype=torch.float64)
    loss_ref = (y_ref * w_y).sum() + (final_ref * w_s).sum()
    loss = (y.double() * w_y.to(DEVICE)).sum() + (final.double() * w_s.to(DEVICE)).sum()
    expected = torch.autograd.grad(loss_ref, list(ref.values()), allow_unused=True)
    actual = torch.autograd.grad(loss, list(mine.values()), allow_unused=True)
    for name, a, e in zip(names, actual, expected, strict=True):
        e = torch.zeros_like(ref[name]) if e is None else e
        assert rel_err(a, e) <= tol, f"d{name}: rel_err {rel_err(a, e):.3g}"


def test_prefix_then_scan_method_matches_function() -> None:
    inputs = ssm_inputs(SSMCase(1, 21, 2, 8, 8, 1))
    args = [inputs[k].float().to(DEVICE) for k in ("x", "dt", "A", "B", "C")]
    backend = TritonSSM({"chunk_size": CHUNK})
    y = backend.prefix_then_scan(*args, transpoint=9, D=inputs["D"].float().to(DEVICE))
    full = backend(*args, D=inputs["D"].float().to(DEVICE))
    assert rel_err(y, full[:, 9:]) <= tolerance(torch.float32)


def test_rejects_bad_chunk_size_and_transpoint() -> None:
    with pytest.raises(ValueError):
        TritonSSM({"chunk_size": 48})
    inputs = ssm_inputs(SSMCase(1, 5, 2, 8, 8, 1))
    args = [inputs[k].float().to(DEVICE) for k in ("x", "dt", "A", "B", "C")]
    with pytest.raises(RuntimeError, match="transpoint"):
        transmamba_ssd(*args, transpoint=6)


def test_supports_declines_with_reasons() -> None:
    backend = TritonSSM()
    ok, reason = backend.supports(device=torch.device(DEVICE), dtype=torch.float64)
    assert not ok and "fp64" in reason or "float64" in reason
    ok, reason = backend.supports(device=torch.device(DEVICE), dtype=torch.float32, n_heads=6, n_groups=4)
    assert not ok and "multiple" in reason


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU with ~40 GB free (B=8, T=64K)")
def test_past_int32_offsets_rows_match_single_row_calls() -> None:
    # B=8, T=64K, H=48 x 64, N=128, chunk 64: the saved chunk states hold 3.2e9 elements, past
    # int32 (before the batch slices, offsets wrapped around). The batch is cut into slices
    # (test_batch_slices_match_reference checks that logic on the CPU). The last row, in the
    # batch and alone, must agree: outputs and gradients.
    from zoo_plugins.triton_ssd import ssd

    gen = torch.Generator(device="cuda").manual_seed(0)
    batch, seq_len, heads, groups = 8, 65536, 48, 8

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, device="cuda") * scale).bfloat16()

    x, dy = randn(batch, seq_len, heads, 64), randn(batch, seq_len, heads, 64)
    B, C = randn(batch, seq_len, groups, 128, scale=128**-0.5), randn(batch, seq_len, groups, 128, scale=128**-0.5)
    dt = torch.nn.functional.softplus(torch.randn(batch, seq_len, heads, generator=gen, device="cuda") - 1)
    A = -torch.exp(torch.rand(heads, generator=gen, device="cuda"))

    def run(rows):
        leaves = [t[rows].detach().requires_grad_(True) for t in (x, dt, B, C)]
        y = ssd(leaves[0], leaves[1], A, leaves[2], leaves[3], chunk_size=64)
        y.backward(dy[rows])
        return [y.detach()[-1]] + [leaf.grad[-1] for leaf in leaves]

    whole = run(slice(None))
    alone = run(slice(batch - 1, batch))
    # not bit-equal: alone, the row is cut into segments (fewer rows than SMs), in the batch not
    for name, got, expected in zip(("y", "dx", "ddt", "dB", "dC"), whole, alone, strict=True):
        assert rel_err(got.float(), expected.float()) < 1e-2, name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the launch tiles of a real model need a CUDA GPU")
@pytest.mark.parametrize("with_D", [True, False], ids=["D", "noD"])
def test_model_shape_on_gpu_matches_fp64(with_D: bool) -> None:
    # The tiles a real mixer launches (P = 64, N = 128, chunk 64, bf16, three pipeline stages),
    # which the small CPU cases never reach: without D, Triton 3.6 once compiled the forward
    # wrong here (launch._skip_weights). Outputs and every gradient against the fp64 chunked SSD.
    from zoo.ops.ssd.chunked import ssd_chunked
    from zoo_plugins.triton_ssd import ssd

    gen = torch.Generator(device="cuda").manual_seed(1)
    batch, seq_len, heads, groups = 1, 1000, 48, 8
    tensors = {
        "x": torch.randn(batch, seq_len, heads, 64, generator=gen, device="cuda"),
        "dt": torch.nn.functional.softplus(torch.randn(batch, seq_len, heads, generator=gen, device="cuda") - 1),
        "A": -torch.exp(torch.rand(heads, generator=gen, device="cuda")),
        "B": torch.randn(batch, seq_len, groups, 128, generator=gen, device="cuda") / 128**0.5,
        "C": torch.randn(batch, seq_len, groups, 128, generator=gen, device="cuda") / 128**0.5,
        "D": torch.randn(heads, generator=gen, device="cuda") if with_D else None,
    }
    low = {
        k: None if v is None else (v.bfloat16() if k in "xBC" else v).requires_grad_(True) for k, v in tensors.items()
    }
    ref = {k: None if v is None else v.detach().double().requires_grad_(True) for k, v in low.items()}
    y = ssd(low["x"], low["dt"], low["A"], low["B"], low["C"], D=low["D"], chunk_size=64)
    y_ref = ssd_chunked(ref["x"], ref["dt"], ref["A"], ref["B"], ref["C"], D=ref["D"], chunk_size=64)
    assert rel_err(y, y_ref) < tolerance(torch.bfloat16), "y"
    cot = torch.randn(y_ref.shape, generator=gen, device="cuda", dtype=torch.float64)
    names = [k for k, v in low.items() if v is not None]
    grads = torch.autograd.grad((y.double() * cot).sum(), [low[k] for k in names])
    ref_grads = torch.autograd.grad((y_ref * cot).sum(), [ref[k] for k in names])
    for name, g, e in zip(names, grads, ref_grads, strict=True):
        assert rel_err(g, e) < tolerance(torch.bfloat16), name
