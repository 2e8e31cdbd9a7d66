"""``norm: triton`` (the fused gated RMSNorm Triton op) against the PyTorch reference (CPU:
Triton interpreter): output and the gradients of y, z and weight with and without the gate,
one and several groups, odd row counts, z read in place from a wider tensor, backward
programs that span several row tiles; fp32 and bf16; torch.compile; refusals; the SSD mixers
with ``norm: triton`` against ``norm: torch`` on the same weights; and the model's shape on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from zoo.backends.norm import TorchNorm
from zoo.ops.norm import gated_rms_norm as reference
from zoo.testing import NORM_CASES, check_norm_backend, rel_err
from zoo.testing.conformance import ConformanceCase, run_compile_case
from zoo_plugins.triton_ssd import TritonNorm
from zoo_plugins.triton_ssd import norm as norm_op
from zoo_plugins.triton_ssd.norm import MAX_GROUP_SIZE, gated_rms_norm

available, why = TritonNorm.is_available()
pytestmark = pytest.mark.skipif(not available, reason=f"norm 'triton' unavailable: {why}")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
EPS = 1e-5
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1e-2}  # bf16: the output's and gradients' rounding


def _inputs(rows: tuple[int, ...], dim: int, *, gate: bool, pad: int = 0, dtype=torch.float32, seed: int = 0):
    """y [*rows, D], z [*rows, D] (a slice of a wider tensor when pad > 0, as z out of
    in_proj) or None, weight [D]; leaves that require gradients."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randn(*rows, dim, generator=gen).to(DEVICE, dtype).requires_grad_(True)
    z = None
    if gate:
        # moved to the device before slicing: a .to() of the slice would copy it contiguous
        wide = torch.randn(*rows, dim + 2 * pad, generator=gen).to(DEVICE, dtype)
        z = wide[..., pad : pad + dim].detach().requires_grad_(True)
    weight = (1 + 0.2 * torch.randn(dim, generator=gen)).to(DEVICE, dtype).requires_grad_(True)
    return y, z, weight


def _check_against_reference(y, z, weight, n_groups: int, tol: float) -> None:
    leaves = [t for t in (y, z, weight) if t is not None]
    ref_leaves = [t.detach().double().requires_grad_(True) for t in leaves]
    ref_y, ref_z, ref_w = ref_leaves if z is not None else (ref_leaves[0], None, ref_leaves[1])
    out = gated_rms_norm(y, z, weight, n_groups=n_groups, eps=EPS)
    expected = reference(ref_y, ref_z, ref_w, n_groups=n_groups, eps=EPS)
    assert out.dtype == y.dtype and out.shape == y.shape
    assert rel_err(out, expected) < tol, "out"
    cotangent = torch.randn(expected.shape, dtype=torch.float64, device=expected.device)
    grads = torch.autograd.grad((out.double() * cotangent).sum(), leaves)
    ref_grads = torch.autograd.grad((expected * cotangent).sum(), ref_leaves)
    names = ["y", "z", "weight"] if z is not None else ["y", "weight"]
    for name, leaf, g, e in zip(names, leaves, grads, ref_grads, strict=True):
        assert g.dtype == leaf.dtype and g.shape == leaf.shape, name
        assert rel_err(g, e) < tol, f"d{name}: {rel_err(g, e):.3g}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(
    "rows,dim,n_groups,gate,pad",
    [
        ((2, 37), 48, 2, True, 3),  # odd rows, groups of 24 (masked lanes), z a strided slice
        ((3, 5), 40, 1, True, 0),  # one group
        ((1, 21), 64, 2, False, 0),  # no gate
        ((1, 1), 24, 1, False, 0),  # one row
        ((13,), 96, 2, True, 0),  # rows with no batch dim
    ],
    ids=["R74-D48-G2-strided", "R15-D40-G1", "R21-D64-G2-nogate", "R1-D24-G1-nogate", "R13-D96-G2"],
)
def test_matches_reference(rows, dim, n_groups, gate, pad, dtype) -> None:
    y, z, weight = _inputs(rows, dim, gate=gate, pad=pad, dtype=dtype)
    if pad:
        assert not z.is_contiguous()  # read in place, not copied
    _check_against_reference(y, z, weight, n_groups, TOLERANCE[dtype])


def test_empty_rows() -> None:
    y, z, weight = _inputs((1, 0), 16, gate=True)
    out = gated_rms_norm(y, z, weight, n_groups=2, eps=EPS)
    assert out.shape == (1, 0, 16)
    dy, dz, dw = torch.autograd.grad(out.sum(), [y, z, weight])
    assert dy.shape == y.shape and dz.shape == z.shape and torch.equal(dw, torch.zeros_like(weight))


@pytest.mark.parametrize("programs", [1, 3, 64])
def test_backward_programs_span_several_row_tiles(monkeypatch, programs: int) -> None:
    # With 2-row tiles, 37 rows over 3 programs per group is 14 rows each and a last one of
    # 9 (a partial tile); one program walks every row; 64 programs means one tile each.
    monkeypatch.setattr(norm_op, "_TILE_BWD", 2 * 32)
    monkeypatch.setattr(norm_op, "_BWD_PROGRAMS", 2 * programs)
    y, z, weight = _inputs((37,), 64, gate=True, seed=programs)
    _check_against_reference(y, z, weight, 2, TOLERANCE[torch.float32])


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_conformance_kit(dtype: torch.dtype) -> None:
    check_norm_backend(TritonNorm(), device=DEVICE, dtype=dtype)


def test_triton_backend_matches_torch_backend() -> None:
    for case in NORM_CASES:
        results = []
        for backend in (TorchNorm(), TritonNorm()):
            y, z, weight = _inputs((case.batch, case.seq_len), case.dim, gate=case.gate, seed=2)
            out = backend(y, z, weight, n_groups=case.n_groups, eps=EPS)
            leaves = [t for t in (y, z, weight) if t is not None]
            results.append([out, *torch.autograd.grad(out.square().sum(), leaves)])
        for torch_value, triton_value in zip(*results, strict=True):
            assert rel_err(triton_value, torch_value) <= 1e-5, case.id


def test_compiles_fullgraph_forward_and_backward() -> None:
    y, z, weight = _inputs((2, 20), 32, gate=True, seed=3)

    def loss(y, z, weight):
        return gated_rms_norm(y, z, weight, n_groups=2, eps=EPS).square().sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    grads = torch.autograd.grad(compiled(y, z, weight), [y, z, weight])
    expected = torch.autograd.grad(loss(y, z, weight), [y, z, weight])
    for g, e in zip(grads, expected, strict=True):
        assert rel_err(g, e) < 1e-6


def test_compiles_fullgraph_as_a_backend() -> None:
    run_compile_case(ConformanceCase("norm", "triton", NORM_CASES[0], {}, DEVICE))


def test_bad_shapes_name_the_fix() -> None:
    y, z, weight = _inputs((4,), 12, gate=True)
    with pytest.raises(ValueError, match=r"n_groups \(5\) must be >= 1 and divide D \(12\)"):
        gated_rms_norm(y, z, weight, n_groups=5, eps=EPS)
    with pytest.raises(ValueError, match=r"weight \[D\]"):
        gated_rms_norm(y, z, weight[:6], n_groups=1, eps=EPS)


def test_supports_refuses_with_one_reason() -> None:
    norm, cpu = TritonNorm(), torch.device(DEVICE)
    assert norm.supports(device=cpu, dtype=torch.bfloat16, d_inner=3072, n_groups=8) == (True, "")
    ok, reason = norm.supports(device=cpu, dtype=torch.float64, d_inner=64, n_groups=1)
    assert not ok and "float64 is not supported (the kernels compute in fp32)" in reason
    ok, reason = norm.supports(device=cpu, dtype=torch.float32, d_inner=2 * (MAX_GROUP_SIZE + 1), n_groups=2)
    assert not ok and f"{MAX_GROUP_SIZE + 1} channels per norm group" in reason
    ok, reason = norm.supports(device=torch.device("meta"), dtype=torch.float32)
    assert not ok and "runs on CUDA" in reason


@pytest.mark.parametrize("mixer_name", ["mamba2", "transmamba"])
def test_ssd_mixers_same_with_triton_or_torch_norm(mixer_name: str) -> None:
    """norm 'triton' against 'torch' on the same weights: outputs and every parameter's
    gradient (TransMamba: the gated SSM rows and the ungated attention rows)."""
    from zoo.layers.mixers.mamba2 import Mamba2Mixer, Mamba2Params
    from zoo.layers.mixers.transmamba import TransMambaMixer, TransMambaParams
    from zoo.registry import ATTENTION, CONV, CONVERTER, SSM

    cls, params_cls = (Mamba2Mixer, Mamba2Params) if mixer_name == "mamba2" else (TransMambaMixer, TransMambaParams)
    backends = {
        "ssm": SSM.get("chunked").obj(),
        "converter": CONVERTER.get("chunked").obj(),
        "attention": ATTENTION.get("sdpa").obj(),
        "conv": CONV.get("torch").obj(),
    }
    mixers = []
    for norm in (TorchNorm(), TritonNorm()):
        torch.manual_seed(0)
        params = params_cls(d_state=8, headdim=8, n_groups=2, expand=2)
        mixers.append(cls(32, params, backends={**backends, "norm": norm}).to(DEVICE))
    assert [type(m.ssd.norm.backend) for m in mixers] == [TorchNorm, TritonNorm]
    assert mixers[0].state_dict().keys() == mixers[1].state_dict().keys()
    assert "ssd.norm.weight" in mixers[1].state_dict()  # checkpoint keys do not depend on the backend
    u = torch.randn(2, 37, 32, device=DEVICE)
    kwargs = {"transpoint": 13} if mixer_name == "transmamba" else {}
    outs = [m(u, **kwargs) for m in mixers]
    assert rel_err(outs[1], outs[0]) < 1e-5
    grads = [torch.autograd.grad(o.square().sum(), list(m.parameters())) for o, m in zip(outs, mixers, strict=True)]
    for (name, _), a, b in zip(mixers[0].named_parameters(), *grads, strict=True):
        assert rel_err(b, a) < 1e-5, name


@pytest.mark.gpu
def test_model_shape_on_gpu() -> None:
    """transmamba-400m's norm: 4 x 2048 rows, d_inner 3072 in 8 groups, bf16, z a slice of in_proj."""
    y, z, weight = _inputs((4, 2048), 3072, gate=True, pad=1500, dtype=torch.bfloat16)
    weight = weight.detach().float().requires_grad_(True)  # fp32 parameters under bf16 autocast
    _check_against_reference(y, z, weight, 8, TOLERANCE[torch.bfloat16])
