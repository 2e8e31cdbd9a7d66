"""The Triton SSD plugin inside PyTorch's tracers (CPU: Triton interpreter, small shapes).

``torch.compile(fullgraph=True)`` with gradients, the custom op that compiled graphs record
against the plain ``autograd.Function`` eager calls take, sliced inputs as a mixer passes
them, ``make_fx`` and compiled autograd, and the refused double backward. Parity of values
and gradients with the references is in ``test_triton_ssd.py``.
"""

from __future__ import annotations

import pytest
import torch

from zoo.testing import SSMCase, rel_err, ssm_inputs, tolerance
from zoo.testing.conformance import ConformanceCase, run_compile_case
from zoo_plugins.triton_ssd import TritonSSM

available, why = TritonSSM.is_available()
pytestmark = pytest.mark.skipif(not available, reason=f"ssm 'triton' unavailable: {why}")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
CHUNK = 16


@pytest.mark.parametrize("kind", ["ssm", "converter"])
def test_compiles_fullgraph(kind: str) -> None:
    run_compile_case(ConformanceCase(kind, "triton", SSMCase(2, 21, 4, 8, 8, 2), {"chunk_size": CHUNK}, DEVICE))


def test_fused_call_compiles_fullgraph_with_backward() -> None:
    inputs = ssm_inputs(SSMCase(1, 21, 2, 8, 8, 1))
    args = [inputs[k].float().to(DEVICE).requires_grad_(True) for k in ("x", "dt", "A", "B", "C")]
    backend = TritonSSM({"chunk_size": CHUNK})

    def step(x, dt, A, B, C):
        y, state = backend.prefix_then_scan(x, dt, A, B, C, transpoint=9, return_final_state=True)
        return y.square().sum() + state.sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    grads = torch.autograd.grad(compiled(*args), args)
    expected = torch.autograd.grad(step(*args), args)
    for a, e in zip(grads, expected, strict=True):
        assert rel_err(a, e) <= tolerance(torch.float32)


def test_eager_calls_skip_the_custom_op_and_compiled_graphs_record_it(monkeypatch) -> None:
    """Eagerly ``ssd()`` runs ``ops._EagerSSD`` (less host work); under torch.compile the
    graph holds the ``zoo_triton_ssd`` ops, forward and backward, as opaque nodes."""
    from zoo_plugins.triton_ssd import ops, ssd

    inputs = ssm_inputs(SSMCase(1, 21, 2, 8, 8, 1))
    args = [inputs[k].float().to(DEVICE).requires_grad_(True) for k in ("x", "dt", "A", "B", "C")]
    graphs = []

    def record(gm, example_inputs):
        from functorch.compile import make_boxed_func

        graphs.append(gm.code)
        return make_boxed_func(gm.forward)

    def step(x, dt, A, B, C):
        return ssd(x, dt, A, B, C, chunk_size=CHUNK).square().sum()

    from torch._functorch.aot_autograd import aot_module_simplified

    def backend(gm, example_inputs):
        return aot_module_simplified(gm, example_inputs, fw_compiler=record, bw_compiler=record)

    compiled = torch.compile(step, fullgraph=True, backend=backend)
    torch.autograd.grad(compiled(*args), args)
    assert len(graphs) == 2
    assert "zoo_triton_ssd.ssd_fwd" in graphs[0] and "zoo_triton_ssd.ssd_bwd" in graphs[1]

    def no_op(*_args, **_kwargs):
        raise AssertionError("the eager path went through the custom op")

    monkeypatch.setattr(ops, "ssd_fwd", no_op)
    monkeypatch.setattr(ops, "ssd_bwd", no_op)
    torch.autograd.grad(step(*args), args)


def test_sliced_inputs_as_a_mixer_passes_them() -> None:
    """x, B and C sliced from one [B, T, channels] tensor (a mixer's conv output): same
    outputs and gradients as contiguous copies, eagerly and compiled. Compiled, the copies
    are made in the graph, before the op (where inductor fuses them into the producer)."""
    from zoo_plugins.triton_ssd import ssd

    case = SSMCase(1, 21, 2, 8, 8, 1)
    inputs = ssm_inputs(case)
    x, B, C = (inputs[k].float().to(DEVICE) for k in ("x", "B", "C"))
    dt, A = inputs["dt"].float().to(DEVICE), inputs["A"].float().to(DEVICE)
    packed = torch.cat([x.flatten(2), B.flatten(2), C.flatten(2)], dim=-1).requires_grad_(True)

    def step(packed, dt, A):
        xs, Bs, Cs = torch.split(packed, [x[0, 0].numel(), B[0, 0].numel(), C[0, 0].numel()], dim=-1)
        y = ssd(
            xs.unflatten(-1, x.shape[2:]),
            dt,
            A,
            Bs.unflatten(-1, B.shape[2:]),
            Cs.unflatten(-1, C.shape[2:]),
            chunk_size=CHUNK,
        )
        return y.square().sum()

    contiguous = [t.clone().requires_grad_(True) for t in (x, B, C)]
    ref = ssd(contiguous[0], dt, A, contiguous[1], contiguous[2], chunk_size=CHUNK).square().sum()
    ref_grad = torch.cat([g.flatten(2) for g in torch.autograd.grad(ref, contiguous)], dim=-1)
    graphs = []

    def record(gm, example_inputs):
        from functorch.compile import make_boxed_func

        graphs.append(gm)
        return make_boxed_func(gm.forward)

    from torch._functorch.aot_autograd import aot_module_simplified

    def backend(gm, example_inputs):
        return aot_module_simplified(gm, example_inputs, fw_compiler=record, bw_compiler=record)

    for fn in (step, torch.compile(step, fullgraph=True, backend=backend)):
        loss = fn(packed, dt, A)
        (grad,) = torch.autograd.grad(loss, packed)
        assert rel_err(loss, ref) <= tolerance(torch.float32)
        assert rel_err(grad, ref_grad) <= tolerance(torch.float32)
    (op_node,) = [n for n in graphs[0].graph.nodes if "ssd_fwd" in str(n.target)]
    for arg in op_node.args[:5]:  # x, dt, A, B, C as the op receives them
        assert arg.meta["val"].is_contiguous(), arg


@pytest.mark.parametrize("tracing_mode", ["fake", "symbolic"])
def test_other_tracers_get_the_op(tracing_mode: str) -> None:
    """make_fx (fake or symbolic shapes) traces ``ssd()`` to the op via its fake kernel,
    never into the eager path's Triton launches."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from zoo_plugins.triton_ssd import ssd

    inputs = ssm_inputs(SSMCase(1, 21, 2, 8, 8, 1))
    args = [inputs[k].float().to(DEVICE) for k in ("x", "dt", "A", "B", "C")]
    graph = make_fx(lambda *a: ssd(*a, chunk_size=CHUNK), tracing_mode=tracing_mode)(*args)
    assert "zoo_triton_ssd.ssd_fwd" in graph.code


@pytest.mark.slow
def test_compiled_autograd_over_an_eager_forward() -> None:
    """An eager forward (``_EagerSSD``) whose backward compiled autograd traces: the traced
    backward calls the op, and the gradients equal the eager ones."""
    from torch._dynamo import compiled_autograd

    from zoo_plugins.triton_ssd import ssd

    inputs = ssm_inputs(SSMCase(1, 20, 2, 8, 8, 1))
    args = [inputs[k].float().to(DEVICE).requires_grad_(True) for k in ("x", "dt", "A", "B", "C")]
    expected = torch.autograd.grad(ssd(*args, chunk_size=CHUNK).square().sum(), args)
    loss = ssd(*args, chunk_size=CHUNK).square().sum()
    with compiled_autograd._enable(lambda gm: torch.compile(gm, backend="aot_eager", fullgraph=True)):
        loss.backward()
    for arg, e in zip(args, expected, strict=True):
        assert rel_err(arg.grad, e) <= tolerance(torch.float32)


def test_double_backward_is_refused_not_silently_wrong() -> None:
    from zoo_plugins.triton_ssd import ssd

    inputs = ssm_inputs(SSMCase(1, 20, 2, 8, 8, 1))
    x, dt, A, B, C = (inputs[k].float().to(DEVICE).requires_grad_(True) for k in ("x", "dt", "A", "B", "C"))
    (grad,) = torch.autograd.grad(ssd(x, dt, A, B, C, chunk_size=CHUNK).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="differentiate twice"):
        grad.sum().backward()
