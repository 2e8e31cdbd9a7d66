"""Conformance cases generated from the registries, for pytest.

Every registered backend of every slot (``attention``, ``ssm``, ``converter``, ``conv``,
``norm``; core or plugin) gets one
test per (params, dtype, shape). A backend class tunes what it is tested with:

- ``conformance_params: ClassVar[list[dict]]``: Params to build it with (default ``[{}]``);
- ``conformance_small: ClassVar[bool]``: use the small shape set (slow backends, e.g.
  Triton under the interpreter);
- ``conformance_shapes: ClassVar[Sequence[SSMCase | AttentionCase]]``: explicit shapes;
- ``conformance_compile: ClassVar[bool]``: False opts out of the torch.compile check.

Unavailable backends (``is_available()`` False) become skips carrying the reason, and so
do shapes/dtypes the backend's ``supports()`` declines. An attention backend that cannot
run backward here but can run forward (``supports(..., requires_grad=0)``) is checked
forward-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from zoo.registry import BACKEND_SLOTS, registry
from zoo.testing.cases import (
    ATTENTION_CASES,
    COMPILE_ATTENTION_CASE,
    COMPILE_SSM_CASE,
    SMALL_ATTENTION_CASES,
    SMALL_SSM_CASES,
    SSM_CASES,
    AttentionCase,
    SSMCase,
    attention_inputs,
    ssm_inputs,
)
from zoo.testing.checks import (
    CaseResult,
    check_attention_backend,
    check_converter_backend,
    check_ssm_backend,
    rel_err,
    tolerance,
)
from zoo.testing.conv import (
    COMPILE_CONV_CASE,
    CONV_CASES,
    SMALL_CONV_CASES,
    ConvCase,
    check_conv_backend,
    conv_inputs,
    conv_shape_keys,
)
from zoo.testing.norm import (
    COMPILE_NORM_CASE,
    EPS,
    NORM_CASES,
    SMALL_NORM_CASES,
    NormCase,
    check_norm_backend,
    norm_inputs,
    norm_shape_keys,
)

BACKEND_KINDS = BACKEND_SLOTS
_CHECKS = {
    "ssm": check_ssm_backend,
    "converter": check_converter_backend,
    "attention": check_attention_backend,
    "conv": check_conv_backend,
    "norm": check_norm_backend,
}
_SHAPES = {  # kind -> (full shape set, small set, the compile check's shape)
    "attention": (ATTENTION_CASES, SMALL_ATTENTION_CASES, COMPILE_ATTENTION_CASE),
    "ssm": (SSM_CASES, SMALL_SSM_CASES, COMPILE_SSM_CASE),
    "converter": (SSM_CASES, SMALL_SSM_CASES, COMPILE_SSM_CASE),
    "conv": (CONV_CASES, SMALL_CONV_CASES, COMPILE_CONV_CASE),
    "norm": (NORM_CASES, SMALL_NORM_CASES, COMPILE_NORM_CASE),
}
_DTYPE_NAMES = {
    torch.float64: "fp64",
    torch.float32: "fp32",
    torch.float16: "fp16",
    torch.bfloat16: "bf16",
}


@dataclass(frozen=True)
class ConformanceCase:
    kind: str
    name: str
    case: SSMCase | AttentionCase | ConvCase | NormCase
    params: dict[str, Any] = field(default_factory=dict, hash=False)
    device: str = "cpu"
    dtype: torch.dtype = torch.float32

    @property
    def id(self) -> str:
        params = "-".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        parts = [self.kind, self.name] + ([params] if params else [])
        parts += [self.case.id, _DTYPE_NAMES.get(self.dtype, str(self.dtype))]
        return "-".join(parts)


def shapes_for(obj: Any, kind: str) -> Sequence[SSMCase | AttentionCase | ConvCase | NormCase]:
    explicit = getattr(obj, "conformance_shapes", None)
    if explicit:
        return explicit
    full, small, _ = _SHAPES[kind]
    return small if getattr(obj, "conformance_small", False) else full


def _as_param(case: ConformanceCase, reason: str) -> Any:
    import pytest

    marks = [pytest.mark.skip(reason=f"{case.kind} {case.name!r} unavailable: {reason}")] if reason else []
    return pytest.param(case, id=case.id, marks=marks)


def conformance_cases(
    kind: str = "all",
    *,
    device: str = "cpu",
    dtypes: Sequence[torch.dtype] = (torch.float32,),
) -> list[Any]:
    """``pytest.param`` list, one per (backend, params, dtype, shape), for ``parametrize``."""
    kinds = BACKEND_KINDS if kind == "all" else (kind,)
    params_list = []
    for each_kind in kinds:
        for entry in registry(each_kind).entries():
            _, reason = entry.availability()
            for params in getattr(entry.obj, "conformance_params", None) or [{}]:
                for dtype in dtypes:
                    for shape in shapes_for(entry.obj, each_kind):
                        case = ConformanceCase(each_kind, entry.name, shape, dict(params), device, dtype)
                        params_list.append(_as_param(case, reason))
    return params_list


def compile_cases(kind: str = "all", *, device: str = "cpu") -> list[Any]:
    """One ``pytest.param`` per backend (its first conformance params): the torch.compile check."""
    kinds = BACKEND_KINDS if kind == "all" else (kind,)
    params_list = []
    for each_kind in kinds:
        for entry in registry(each_kind).entries():
            _, reason = entry.availability()
            if not getattr(entry.obj, "conformance_compile", True):
                reason = reason or "opted out (conformance_compile = False)"
            explicit = getattr(entry.obj, "conformance_shapes", None)
            shape = explicit[0] if explicit else _SHAPES[each_kind][2]
            params = (getattr(entry.obj, "conformance_params", None) or [{}])[0]
            case = ConformanceCase(each_kind, entry.name, shape, dict(params), device)
            params_list.append(_as_param(case, reason))
    return params_list


def shape_keys(case: SSMCase | AttentionCase | ConvCase | NormCase) -> dict[str, int]:
    """The ``supports(**shapes)`` keywords of a shape."""
    if isinstance(case, ConvCase):
        return conv_shape_keys(case)
    if isinstance(case, NormCase):
        return norm_shape_keys(case)
    if isinstance(case, AttentionCase):
        return {
            "n_heads": case.n_heads,
            "n_groups": case.n_groups,
            "head_dim": case.head_dim,
            "state_dim": case.qk_dim,
            "seq_len": case.n_keys,
        }
    return {
        "n_heads": case.n_heads,
        "n_groups": case.n_groups,
        "head_dim": case.head_dim,
        "state_dim": case.state_dim,
        "seq_len": case.seq_len,
    }


def build_backend(case: ConformanceCase) -> tuple[Any, bool]:
    """Build the backend; (backend, grads) or pytest.skip with the backend's own reason."""
    import pytest

    backend = registry(case.kind).get(case.name).obj(case.params)
    device = torch.device(case.device)
    ok, reason = backend.supports(device=device, dtype=case.dtype, **shape_keys(case.case))
    if ok:
        return backend, True
    if case.kind == "attention":
        ok_fwd, _ = backend.supports(device=device, dtype=case.dtype, requires_grad=0, **shape_keys(case.case))
        if ok_fwd:
            return backend, False
    pytest.skip(f"{case.kind} {case.name!r} does not support this case: {reason}")


def run_conformance_case(case: ConformanceCase) -> list[CaseResult]:
    """Run one conformance case (raises AssertionError with every failed quantity)."""
    backend, grads = build_backend(case)
    check = _CHECKS[case.kind]
    return check(backend, device=case.device, dtype=case.dtype, cases=[case.case], grads=grads)


def _maybe_dynamic(tensors: Sequence[torch.Tensor | None], dims: Sequence[int]) -> None:
    for tensor in tensors:
        if tensor is not None:
            for dim in dims:
                torch._dynamo.maybe_mark_dynamic(tensor, dim)


def run_compile_case(case: ConformanceCase, *, compile_backend: str = "eager") -> None:
    """The backend traces with torch.compile(fullgraph=True) and matches eager.

    Batch and sequence dims are marked dynamic, as in a compiled model whose head and
    state sizes come from (static) parameter shapes. ``backend="eager"`` makes this a
    cheap graph-break check; pass "inductor" to also compile kernels.
    """
    from torch._dynamo.testing import CompileCounterWithBackend

    backend, _ = build_backend(case)
    # A counter, so that dynamo quietly falling back to eager (cache limit) fails the check.
    counter = CompileCounterWithBackend(compile_backend)
    compiled = torch.compile(backend.__call__, fullgraph=True, backend=counter)
    if isinstance(case.case, AttentionCase):
        inputs = {k: v.float().to(case.device) for k, v in attention_inputs(case.case).items()}
        kwargs = {"scale": case.case.qk_dim**-0.5, "causal": case.case.causal}
        _maybe_dynamic(list(inputs.values()), (0, 1))
        expected, actual = (
            backend(*inputs.values(), **kwargs),
            compiled(*inputs.values(), **kwargs),
        )
    elif isinstance(case.case, ConvCase):
        inputs = {k: None if v is None else v.float().to(case.device) for k, v in conv_inputs(case.case).items()}
        _maybe_dynamic([inputs["x"]], (0, 1))
        kwargs = {"split_sizes": list(case.case.split_sizes)}
        expected = tuple(backend(*inputs.values(), **kwargs))
        actual = tuple(compiled(*inputs.values(), **kwargs))
    elif isinstance(case.case, NormCase):
        inputs = {k: None if v is None else v.float().to(case.device) for k, v in norm_inputs(case.case).items()}
        _maybe_dynamic([inputs["y"], inputs["z"]], (0, 1))
        kwargs = {"n_groups": case.case.n_groups, "eps": EPS}
        expected, actual = backend(*inputs.values(), **kwargs), compiled(*inputs.values(), **kwargs)
    else:
        raw = {k: None if v is None else v.float().to(case.device) for k, v in ssm_inputs(case.case).items()}
        if case.kind == "ssm":
            args = [raw[a] for a in ("x", "dt", "A", "B", "C")]
            kwargs = {
                "D": raw["D"],
                "initial_state": raw["initial_state"],
                "return_final_state": True,
            }
        else:
            args = [raw["B"], raw["x"], raw["dt"], raw["A"]]
            kwargs = {"initial_state": raw["initial_state"]}
        _maybe_dynamic([raw[a] for a in ("x", "dt", "B", "C")], (0, 1))
        _maybe_dynamic([raw["initial_state"]], (0,))
        expected, actual = backend(*args, **kwargs), compiled(*args, **kwargs)
    assert counter.frame_count >= 1, f"{case.id}: torch.compile did not compile the call"
    expected = expected if isinstance(expected, tuple) else (expected,)
    actual = actual if isinstance(actual, tuple) else (actual,)
    for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
        err = rel_err(a, e)
        assert err <= tolerance(torch.float32), (
            f"{case.id}: compiled output {index} differs from eager, rel_err {err:.3g}"
        )
