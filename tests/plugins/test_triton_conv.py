"""``conv: triton`` (the fused causal conv + SiLU Triton op) against the PyTorch reference
(CPU: Triton interpreter): outputs and gradients at tile edges, strided inputs, several
outputs, an output nobody uses; torch.compile; the conformance kit against ``conv: torch``;
and the SSD mixers with ``conv: triton`` against ``conv: torch`` on the same weights.
"""

from __future__ import annotations

import pytest
import torch

from zoo.backends.conv import TorchConv
from zoo.ops.conv import conv_reference
from zoo.testing import CONV_CASES, check_conv_backend, conv_inputs, rel_err, tolerance
from zoo.testing.conformance import ConformanceCase, run_compile_case
from zoo_plugins.triton_ssd import TritonConv
from zoo_plugins.triton_ssd import conv as conv_op
from zoo_plugins.triton_ssd.conv import causal_conv1d

available, why = TritonConv.is_available()
pytestmark = pytest.mark.skipif(not available, reason=f"conv 'triton' unavailable: {why}")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs(batch: int, seq_len: int, channels: int, width: int, *, pad: int = 0, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # moved to the device before slicing: a .to() of the slice would copy it contiguous
    wide = torch.randn(batch, seq_len, channels + 2 * pad, generator=gen).to(DEVICE, dtype)
    x = wide[:, :, pad : pad + channels]  # a slice of a wider tensor when pad > 0 (token stride C + 2 pad)
    weight = torch.randn(channels, width, generator=gen) / width**0.5
    bias = torch.randn(channels, generator=gen)
    return [x] + [t.to(DEVICE, dtype) for t in (weight, bias)]


@pytest.mark.parametrize(
    "batch,seq_len,channels,width,splits,activation,with_bias,pad",
    [
        (2, 70, 40, 4, [24, 8, 8], True, True, 3),  # two token tiles, three outputs, strided x
        (1, 1, 40, 4, [40], True, True, 0),  # one token: only the last tap sees data
        (2, 3, 136, 4, [128, 8], False, False, 0),  # two channel tiles, T < W - 1
        (1, 65, 12, 2, [4, 4, 4], True, False, 5),  # width 2
    ],
)
@pytest.mark.parametrize("backward", conv_op.BACKWARD_KERNELS)
def test_matches_reference(
    batch, seq_len, channels, width, splits, activation, with_bias, pad, backward, monkeypatch
) -> None:
    monkeypatch.setattr(conv_op, "backward_kernels", backward)
    x, weight, bias = _inputs(batch, seq_len, channels, width, pad=pad)
    bias = bias if with_bias else None
    # detach keeps x's strides: with pad > 0 the kernel reads a slice of a wider tensor
    leaves = [t.detach().requires_grad_(True) for t in (x, weight) + ((bias,) if with_bias else ())]
    assert leaves[0].is_contiguous() == (pad == 0)
    ref_leaves = [t.detach().double().requires_grad_(True) for t in leaves]
    outs = causal_conv1d(
        leaves[0], leaves[1], leaves[2] if with_bias else None, activation=activation, split_sizes=splits
    )
    assert [o.shape[-1] for o in outs] == splits and all(o.is_contiguous() for o in outs)
    expected = conv_reference(ref_leaves[0], ref_leaves[1], ref_leaves[2] if with_bias else None, activation)
    got = torch.cat(outs, dim=-1)
    assert rel_err(got, expected) < 1e-5
    cotangent = torch.randn(expected.shape, dtype=torch.float64, device=expected.device)
    grads = torch.autograd.grad((got.double() * cotangent).sum(), leaves)
    ref_grads = torch.autograd.grad((expected * cotangent).sum(), ref_leaves)
    for name, g, e in zip(("x", "weight", "bias"), grads, ref_grads, strict=False):
        assert rel_err(g, e) < 1e-5, name


def test_bf16_within_bf16_rounding() -> None:
    x, weight, bias = _inputs(1, 70, 40, 4, dtype=torch.bfloat16)
    (out,) = causal_conv1d(x, weight, bias)
    assert out.dtype == torch.bfloat16
    assert rel_err(out, conv_reference(x.double(), weight.double(), bias.double(), True)) < 1e-2


@pytest.mark.parametrize("backward", conv_op.BACKWARD_KERNELS)
def test_unused_output_gets_no_gradient_work(backward: str, monkeypatch) -> None:
    monkeypatch.setattr(conv_op, "backward_kernels", backward)
    x, weight, bias = (t.requires_grad_(True) for t in _inputs(2, 9, 16, 4))
    first, second = causal_conv1d(x, weight, bias, split_sizes=[10, 6])
    (dx,) = torch.autograd.grad(second.sum(), [x])
    x64 = x.detach().double().requires_grad_(True)
    (expected,) = torch.autograd.grad(conv_reference(x64, weight.double(), bias.double(), True)[..., 10:].sum(), [x64])
    assert rel_err(dx, expected) < 1e-5


def test_compiles_fullgraph_forward_and_backward() -> None:
    x, weight, bias = (t.requires_grad_(True) for t in _inputs(2, 20, 24, 4, seed=3))

    def loss(x, weight, bias):
        a, b = causal_conv1d(x, weight, bias, split_sizes=[16, 8])
        return a.square().sum() + b.sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    grads = torch.autograd.grad(compiled(x, weight, bias), [x, weight, bias])
    expected = torch.autograd.grad(loss(x, weight, bias), [x, weight, bias])
    for g, e in zip(grads, expected, strict=True):
        assert rel_err(g, e) < 1e-6


def test_bad_split_sizes_name_the_fix() -> None:
    x, weight, bias = _inputs(1, 4, 8, 4)
    with pytest.raises(ValueError, match=r"split_sizes \[4, 5\] must be 1-3 positive sizes summing to C=8"):
        causal_conv1d(x, weight, bias, split_sizes=[4, 5])
    with pytest.raises(ValueError, match="weight \\[C, W\\]"):
        causal_conv1d(x, weight[:4], bias)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_conformance_kit(dtype: torch.dtype) -> None:
    check_conv_backend(TritonConv(), device=DEVICE, dtype=dtype)


@pytest.mark.slow
def test_triton_backend_matches_torch_backend() -> None:
    """The two conv backends on the same inputs: every output part and every gradient."""
    for case in CONV_CASES:
        inputs = {k: None if v is None else v.float().to(DEVICE) for k, v in conv_inputs(case, seed=2).items()}
        results = []
        for backend in (TorchConv(), TritonConv()):
            leaves = {k: None if v is None else v.clone().requires_grad_(True) for k, v in inputs.items()}
            outs = backend(*leaves.values(), split_sizes=list(case.split_sizes))
            loss = sum((out * (index + 1)).square().sum() for index, out in enumerate(outs))
            present = [v for v in leaves.values() if v is not None]
            results.append([*outs, *torch.autograd.grad(loss, present)] if present[0].numel() else list(outs))
        for torch_value, triton_value in zip(*results, strict=True):
            assert rel_err(triton_value, torch_value) <= tolerance(torch.float32), case.id


def test_compiles_fullgraph_as_a_backend() -> None:
    run_compile_case(ConformanceCase("conv", "triton", CONV_CASES[0], {}, DEVICE))


@pytest.mark.parametrize("mixer_name", ["mamba2", "transmamba"])
def test_ssd_mixers_same_with_triton_or_torch_conv(mixer_name: str) -> None:
    """conv 'triton' against 'torch' on the same weights: outputs, every parameter's
    gradient, and the conv state a prefill would carry on (``inputs``)."""
    from zoo.layers.mixers.mamba2 import Mamba2Mixer, Mamba2Params
    from zoo.layers.mixers.transmamba import TransMambaMixer, TransMambaParams
    from zoo.registry import ATTENTION, CONVERTER, SSM

    cls, params_cls = (Mamba2Mixer, Mamba2Params) if mixer_name == "mamba2" else (TransMambaMixer, TransMambaParams)
    backends = {
        "ssm": SSM.get("chunked").obj(),
        "converter": CONVERTER.get("chunked").obj(),
        "attention": ATTENTION.get("sdpa").obj(),
    }
    mixers = []
    for conv in (TorchConv(), TritonConv()):
        torch.manual_seed(0)
        params = params_cls(d_state=8, headdim=8, n_groups=2, expand=2)
        mixers.append(cls(32, params, backends={**backends, "conv": conv}).to(DEVICE))
    u = torch.randn(2, 37, 32, device=DEVICE)
    kwargs = {"transpoint": 13} if mixer_name == "transmamba" else {}
    outs = [m(u, **kwargs) for m in mixers]
    assert rel_err(outs[1], outs[0]) < 1e-5
    grads = [torch.autograd.grad(o.square().sum(), list(m.parameters())) for o, m in zip(outs, mixers, strict=True)]
    for (name, _), a, b in zip(mixers[0].named_parameters(), *grads, strict=True):
        assert rel_err(b, a) < 1e-5, name
    states = [m.ssd.inputs(u)[-1] for m in mixers]
    torch.testing.assert_close(states[1], states[0])


@pytest.mark.slow
def test_launches_are_cut_into_batch_slices_below_int32_offsets(monkeypatch) -> None:
    """The kernels index in int32; a call whose batch would pass 2**31 elements runs in
    slices of whole rows (checked here with a tiny limit), with the same results."""
    conv = conv_op
    x, weight, bias = (t.requires_grad_(True) for t in _inputs(5, 9, 16, 4, pad=2, seed=7))
    expected = causal_conv1d(x, weight, bias, split_sizes=[10, 6])
    expected_grads = torch.autograd.grad(sum(o.square().sum() for o in expected), [x, weight, bias])
    monkeypatch.setattr(conv, "backward_kernels", "fused")  # the expected values came from the two-pass kernels
    monkeypatch.setattr(conv, "_INT32_LIMIT", 2 * 9 * 20)  # two rows of 9 tokens x (16 + 4) per launch
    assert conv._batch_slices(x.detach()) == [(0, 2), (2, 4), (4, 5)]
    got = causal_conv1d(x, weight, bias, split_sizes=[10, 6])
    grads = torch.autograd.grad(sum(o.square().sum() for o in got), [x, weight, bias])
    for a, b in zip([*got, *grads], [*expected, *expected_grads], strict=True):
        torch.testing.assert_close(a, b)
    monkeypatch.setattr(conv, "_INT32_LIMIT", 100)
    with pytest.raises(ValueError, match="more than 2\\*\\*31 elements; split the sequence"):
        causal_conv1d(x, weight, bias)


@pytest.mark.parametrize("backward", conv_op.BACKWARD_KERNELS)
@pytest.mark.parametrize("tiles", [1, 2, 3])
def test_backward_programs_span_several_tiles(monkeypatch, tiles: int, backward: str) -> None:
    # The d_pre/dw kernel (or the fused backward) walks TILES token tiles per program: with
    # tiles of 8 tokens, T = 70 gives programs that end inside a tile, and one partial
    # program at the end (the fused kernel's look-ahead past a tile crosses into the next).
    conv = conv_op
    monkeypatch.setattr(conv, "backward_kernels", backward)
    monkeypatch.setattr(conv, "_BT_PRE", 8)
    monkeypatch.setattr(conv, "_BC_PRE", 16)
    monkeypatch.setattr(conv, "_TILES_PRE", tiles)
    x, weight, bias = _inputs(2, 70, 40, 4, pad=2, seed=tiles)
    leaves = [t.detach().requires_grad_(True) for t in (x, weight, bias)]
    ref_leaves = [t.detach().double().requires_grad_(True) for t in leaves]
    got = torch.cat(causal_conv1d(*leaves, split_sizes=[24, 16]), dim=-1)
    expected = conv_reference(*ref_leaves, True)
    cotangent = torch.randn(expected.shape, dtype=torch.float64, device=expected.device)
    grads = torch.autograd.grad((got.double() * cotangent).sum(), leaves)
    ref_grads = torch.autograd.grad((expected * cotangent).sum(), ref_leaves)
    for name, g, e in zip(("x", "weight", "bias"), grads, ref_grads, strict=True):
        assert rel_err(g, e) < 1e-5, name
