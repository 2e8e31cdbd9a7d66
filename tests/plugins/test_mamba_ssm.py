"""The mamba-ssm plugin against the references (CPU: Triton interpreter, small shapes).

Skips with the install hint when mamba-ssm is not installed. On CPU, mamba-ssm's launch
code calls two CUDA-only helpers; the ``cpu_shims`` fixture stands them in.
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from zoo.testing import SSMCase, check_ssm_backend
from zoo_plugins.mamba_ssm import MambaSSM

available, why = MambaSSM.is_available()
pytestmark = pytest.mark.skipif(not available, reason=f"ssm 'mamba_ssm' unavailable: {why}")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CASES = (
    SSMCase(1, 37, 4, 16, 16, 2),
    SSMCase(2, 20, 2, 16, 16, 1, initial_state=False, skip_D=True),
)


@pytest.fixture
def cpu_shims(monkeypatch: pytest.MonkeyPatch) -> None:
    if DEVICE == "cuda":
        return

    class _NoDevice:
        def __init__(self, *_: object) -> None: ...
        def __enter__(self) -> None: ...
        def __exit__(self, *_: object) -> None: ...

    monkeypatch.setattr(torch.cuda, "device", _NoDevice)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda *_: SimpleNamespace(multi_processor_count=2))


def test_import_does_not_run_mamba_ssm_init() -> None:
    code = (
        "import sys, zoo_plugins.mamba_ssm as p;"
        "p.MambaSSM.is_available();"
        "assert 'mamba_ssm' not in sys.modules, 'imported at registration'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# Triton's CPU interpreter multiplies 16-bit floats wrongly (a tl.dot bug that the zoo's
# own kernels work around), so bf16 is checked on GPUs only.
DTYPES = [torch.float32, torch.bfloat16] if DEVICE == "cuda" else [torch.float32]


# On a GPU mamba-ssm's fp32 dots run in tf32 (errors ~1e-3 measured on an H200), so
# fp32 there is held to a tf32 tolerance; the interpreter's fp32 is exact and keeps 1e-5.
TF32_TOL = 5e-3


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_mamba_ssm_matches_reference(cpu_shims: None, dtype: torch.dtype) -> None:
    tol = TF32_TOL if DEVICE == "cuda" and dtype == torch.float32 else None
    check_ssm_backend(MambaSSM({"chunk_size": 16}), device=DEVICE, dtype=dtype, cases=CASES, tol=tol)


def test_supports_declines_with_reasons() -> None:
    backend = MambaSSM()
    ok, reason = backend.supports(device=torch.device("cpu"), dtype=torch.float32)
    assert not ok and "CUDA" in reason
    ok, reason = backend.supports(device=torch.device("cuda"), dtype=torch.float32, seq_len=0)
    assert not ok and "token" in reason


def test_compiles_fullgraph_as_one_op(cpu_shims: None) -> None:
    """The backend is a custom op to dynamo: fullgraph tracing needs no mamba-ssm import."""
    from zoo.testing import ssm_inputs

    backend = MambaSSM({"chunk_size": 16})
    inputs = ssm_inputs(CASES[0], seed=0)
    inputs = {k: v.to(DEVICE, torch.float32) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    compiled = torch.compile(backend.__call__, fullgraph=True, backend="eager")
    y, state = compiled(**inputs, return_final_state=True)
    y_ref, state_ref = backend(**inputs, return_final_state=True)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(state, state_ref)


@pytest.mark.gpu
def test_model_with_mamba_ssm_compiles_on_gpu() -> None:
    import zoo
    from zoo.overrides import spec_with_backends

    spec, _ = spec_with_backends(zoo.resolve_spec("mamba2-tiny").model_dump(mode="json"), {"ssm": "mamba_ssm"})
    model = zoo.build(spec, device="cuda", compile=True)
    ids = torch.randint(0, 260, (2, 256), device="cuda")
    model(ids).float().logsumexp(-1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
