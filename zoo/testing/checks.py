"""Compare a backend with the zoo's references: outputs, every input gradient, final states.

Inputs are drawn in fp64, cast to the dtype under test, and the reference runs in fp64
on exactly those cast values, so the error measured is the backend's own. The metric is
``rel_err(a, b) = ||a - b|| / ||b||`` with a tolerance per dtype. Backend calls run with
``torch.empty`` filled with NaN, so memory a kernel forgets to write fails the check.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from zoo.backends.base import AttentionBackend, ConverterBackend, SSMBackend
from zoo.ops.attention.reference import grouped_attention
from zoo.ops.ssd.reference import converter_scan, ssd_scan
from zoo.testing.cases import (
    ATTENTION_CASES,
    SMALL_ATTENTION_CASES,
    SMALL_SSM_CASES,
    SSM_CASES,
    AttentionCase,
    SSMCase,
    attention_inputs,
    ssm_inputs,
)

TOLERANCES: dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 1e-5,
    torch.float16: 5e-3,
    torch.bfloat16: 3e-2,
}


def tolerance(dtype: torch.dtype) -> float:
    try:
        return TOLERANCES[dtype]
    except KeyError:
        raise ValueError(f"no conformance tolerance for dtype {dtype}") from None


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """||actual - expected|| / ||expected|| in fp64 (absolute when expected is all zero)."""
    a, b = actual.detach().double().cpu(), expected.detach().double().cpu()
    if a.shape != b.shape:
        return math.inf
    diff = (a - b).norm().item()
    scale = b.norm().item()
    err = diff / scale if scale > 0 else diff
    return err if math.isfinite(err) else math.inf


@contextlib.contextmanager
def nan_filled_empty() -> Iterator[None]:
    """Fill memory from torch.empty & co. with NaN (PyTorch's deterministic-mode switch)."""
    from torch.utils import deterministic

    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    fill = deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    deterministic.fill_uninitialized_memory = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*deterministic.*")
            yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        deterministic.fill_uninitialized_memory = fill


@dataclass
class CaseResult:
    """Measured relative errors of one case; ``problems`` lists what failed, empty if none."""

    case_id: str
    errors: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    grads_checked: bool = True

    def compare(
        self,
        name: str,
        actual: torch.Tensor | None,
        expected: torch.Tensor | None,
        tol: float,
    ) -> None:
        if expected is None:  # the reference does not use this input (e.g. T = 0)
            if actual is None:
                return
            expected = torch.zeros_like(actual, dtype=torch.float64)
        if actual is None:
            actual = torch.zeros_like(expected)
            if expected.abs().sum() > 0:
                self.problems.append(f"{name}: no gradient, but the reference has one")
                return
        if tuple(actual.shape) != tuple(expected.shape):
            self.problems.append(f"{name}: shape {list(actual.shape)}, expected {list(expected.shape)}")
            return
        err = rel_err(actual, expected)
        self.errors[name] = err
        if not err <= tol:
            self.problems.append(f"{name}: rel_err {err:.3g} > tolerance {tol:.1g}")

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.problems.append(message)


def _raise_if_failed(what: str, results: Sequence[CaseResult]) -> None:
    failed = [r for r in results if r.problems]
    if failed:
        lines = [f"{what}: {len(failed)} of {len(results)} case(s) failed"]
        for r in failed:
            lines += [f"  [{r.case_id}]"] + [f"    {p}" for p in r.problems]
        raise AssertionError("\n".join(lines))


def _prepare(
    tensors: dict[str, torch.Tensor | None],
    dtype: torch.dtype,
    device: str | torch.device,
    grads: bool,
) -> tuple[dict, dict]:
    """(backend inputs on device in dtype, fp64 reference copies of the same values)."""
    mine, ref = {}, {}
    for name, value in tensors.items():
        if value is None:
            mine[name] = ref[name] = None
            continue
        # States are fp32 by contract, whatever the activation dtype.
        cast = value.to(torch.promote_types(dtype, torch.float32) if name == "initial_state" else dtype)
        mine[name] = cast.to(device).requires_grad_(grads)
        ref[name] = cast.double().requires_grad_(grads)
    return mine, ref


def _grads(loss: torch.Tensor, inputs: dict) -> dict[str, torch.Tensor | None]:
    names = [n for n, t in inputs.items() if t is not None]
    found = torch.autograd.grad(loss, [inputs[n] for n in names], allow_unused=True)
    return dict(zip(names, found, strict=True))


def _weighted_sum(outputs: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((o.double() * w.to(o.device)).sum() for o, w in zip(outputs, weights, strict=True))


def _cotangents(*like: torch.Tensor, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed + 1)
    return [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in like]


def compare_grads(
    result: CaseResult,
    outs: Sequence[torch.Tensor],
    outs_ref: Sequence[torch.Tensor],
    mine: dict,
    ref: dict,
    tol: float,
    *,
    seed: int,
) -> None:
    """Every input's gradient of a random weighted sum of ``outs`` against the fp64 reference's
    (the same weights on ``outs_ref``), into ``result`` as ``d<name>``."""
    weights = _cotangents(*outs_ref, seed=seed)
    expected = _grads(_weighted_sum(outs_ref, weights), ref)
    with nan_filled_empty():
        actual = _grads(_weighted_sum(outs, weights), mine)
    for name, grad in expected.items():
        result.compare(f"d{name}", actual[name], grad, tol)


def _state_dtype_ok(state: torch.Tensor, dtype: torch.dtype) -> bool:
    return state.dtype == torch.float32 or (dtype == torch.float64 and state.dtype == torch.float64)


def check_ssm_backend(
    backend: SSMBackend,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cases: Sequence[SSMCase] | None = None,
    small: bool = False,
    grads: bool = True,
    seed: int = 0,
    tol: float | None = None,
) -> list[CaseResult]:
    """Check ``backend`` against :func:`zoo.ops.ssd.reference.ssd_scan`; raise AssertionError on failure.

    Compares y, final_state and the gradients of x, dt, A, B, C, D, initial_state, to the
    dtype's tolerance (:func:`tolerance`) unless ``tol`` is given: a backend whose fp32
    products run in tf32 on a GPU (mamba_ssm's kernels) cannot meet the fp32 one.
    """
    cases = cases or (SMALL_SSM_CASES if small else SSM_CASES)
    tol = tolerance(dtype) if tol is None else tol
    results = []
    for case in cases:
        result = CaseResult(case.id)
        mine, ref = _prepare(ssm_inputs(case, seed=seed), dtype, device, grads)
        args = ("x", "dt", "A", "B", "C")
        y_ref, state_ref = ssd_scan(
            *(ref[a] for a in args),
            D=ref["D"],
            initial_state=ref["initial_state"],
            return_final_state=True,
        )
        with nan_filled_empty():
            y, state = backend(
                *(mine[a] for a in args),
                D=mine["D"],
                initial_state=mine["initial_state"],
                return_final_state=True,
            )
            with torch.no_grad():
                y_only = backend(
                    *(mine[a] for a in args),
                    D=mine["D"],
                    initial_state=mine["initial_state"],
                )
        result.expect(y.dtype == dtype, f"y dtype {y.dtype}, expected {dtype} (the dtype of x)")
        result.expect(
            _state_dtype_ok(state, dtype),
            f"final_state dtype {state.dtype}, expected torch.float32",
        )
        result.expect(
            isinstance(y_only, torch.Tensor),
            "return_final_state=False must return a tensor",
        )
        result.compare("y", y, y_ref, tol)
        result.compare("final_state", state, state_ref, tol)
        if isinstance(y_only, torch.Tensor):
            result.compare("y (return_final_state=False)", y_only, y_ref, tol)
        if grads:
            compare_grads(result, [y, state], [y_ref, state_ref], mine, ref, tol, seed=seed)
        results.append(result)
    _raise_if_failed(f"SSM backend {backend!r} ({dtype}, {device})", results)
    return results


def check_converter_backend(
    backend: ConverterBackend,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cases: Sequence[SSMCase] | None = None,
    small: bool = False,
    grads: bool = True,
    seed: int = 0,
    tol: float | None = None,
) -> list[CaseResult]:
    """Check ``backend`` against :func:`zoo.ops.ssd.reference.converter_scan` (state and its gradients).

    k is the SSM's B, v its x; the state must equal the final state of scanning the prefix.
    """
    cases = cases or (SMALL_SSM_CASES if small else SSM_CASES)
    tol = tolerance(dtype) if tol is None else tol
    results = []
    for case in cases:
        result = CaseResult(case.id)
        inputs = ssm_inputs(case, seed=seed)
        inputs = {
            "k": inputs["B"],
            "v": inputs["x"],
            "dt": inputs["dt"],
            "A": inputs["A"],
            "initial_state": inputs["initial_state"],
        }
        mine, ref = _prepare(inputs, dtype, device, grads)
        state_ref = converter_scan(ref["k"], ref["v"], ref["dt"], ref["A"], initial_state=ref["initial_state"])
        with nan_filled_empty():
            state = backend(
                mine["k"],
                mine["v"],
                mine["dt"],
                mine["A"],
                initial_state=mine["initial_state"],
            )
        result.expect(
            _state_dtype_ok(state, dtype),
            f"state dtype {state.dtype}, expected torch.float32",
        )
        result.compare("state", state, state_ref, tol)
        if grads:
            (weight,) = _cotangents(state_ref, seed=seed)
            expected = _grads(_weighted_sum([state_ref], [weight]), ref)
            with nan_filled_empty():
                actual = _grads(_weighted_sum([state], [weight]), mine)
            for name, grad in expected.items():
                result.compare(f"d{name}", actual[name], grad, tol)
        results.append(result)
    _raise_if_failed(f"converter backend {backend!r} ({dtype}, {device})", results)
    return results


def check_attention_backend(
    backend: AttentionBackend,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cases: Sequence[AttentionCase] | None = None,
    small: bool = False,
    grads: bool = True,
    seed: int = 0,
) -> list[CaseResult]:
    """Check ``backend`` against :func:`zoo.ops.attention.reference.grouped_attention`.

    Compares the output and the gradients of q, k, v; covers T < S (decode, chunked
    prefill, bottom-right causal) and non-causal calls.
    """
    cases = cases or (SMALL_ATTENTION_CASES if small else ATTENTION_CASES)
    tol = tolerance(dtype)
    results = []
    for case in cases:
        result = CaseResult(case.id, grads_checked=grads)
        mine, ref = _prepare(attention_inputs(case, seed=seed), dtype, device, grads)
        scale = case.qk_dim**-0.5
        out_ref = grouped_attention(ref["q"], ref["k"], ref["v"], scale=scale, causal=case.causal)
        with nan_filled_empty():
            out = backend(mine["q"], mine["k"], mine["v"], scale=scale, causal=case.causal)
        result.expect(out.dtype == dtype, f"output dtype {out.dtype}, expected {dtype}")
        result.compare("out", out, out_ref, tol)
        if grads:
            compare_grads(result, [out], [out_ref], mine, ref, tol, seed=seed)
        results.append(result)
    _raise_if_failed(f"attention backend {backend!r} ({dtype}, {device})", results)
    return results
