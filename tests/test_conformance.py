"""Every registered ssm / converter / attention backend against the references.

Cases come from the registries (core and plugins), so a backend is tested the moment it
registers. Shapes, params and opt-outs are declared on the backend class; see
:mod:`zoo.testing.conformance`.
"""

from __future__ import annotations

import pytest
import torch

from zoo.backends.base import AttentionBackend, SSMBackend
from zoo.ops.attention import grouped_attention
from zoo.ops.ssd import ssd_chunked
from zoo.testing import (
    ConformanceCase,
    check_attention_backend,
    check_ssm_backend,
    compile_cases,
    conformance_cases,
    run_compile_case,
    run_conformance_case,
)


@pytest.mark.parametrize("case", conformance_cases("all", dtypes=(torch.float32, torch.bfloat16)))
def test_backend_matches_reference(case: ConformanceCase) -> None:
    run_conformance_case(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", compile_cases("all"))
def test_backend_compiles_fullgraph(case: ConformanceCase) -> None:
    run_compile_case(case)


class _IgnoresInitialState(SSMBackend):
    """A broken backend: drops the initial state."""

    def __call__(self, x, dt, A, B, C, *, D=None, initial_state=None, return_final_state=False):
        return ssd_chunked(x, dt, A, B, C, D=D, return_final_state=return_final_state)


class _LeavesOutputUnwritten(AttentionBackend):
    """A broken backend: allocates with torch.empty and forgets the last query."""

    def __call__(self, q, k, v, *, scale, causal=True):
        out = torch.empty(q.shape[0], q.shape[1], v.shape[2], v.shape[3], dtype=v.dtype)
        out[:, :-1] = grouped_attention(q, k, v, scale=scale, causal=causal)[:, :-1]
        return out


def test_kit_reports_a_wrong_backend_by_case_and_quantity() -> None:
    with pytest.raises(AssertionError) as failure:
        check_ssm_backend(_IgnoresInitialState(), small=True)
    message = str(failure.value)
    assert "B1-T17-H4-P8-N8-G2-init" in message and "final_state: rel_err" in message
    assert "dinitial_state" in message


def test_kit_catches_unwritten_memory() -> None:
    with pytest.raises(AssertionError, match="out: rel_err inf"):
        check_attention_backend(_LeavesOutputUnwritten(), small=True, grads=False)
