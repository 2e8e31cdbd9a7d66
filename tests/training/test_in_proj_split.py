"""The SSD mixers' ``in_proj: split``: z, x/B/C and dt as a matmul each in training, so the
backward never joins their gradients into one in_proj-wide tensor. The numbers do not
change (eager, compiled, with ``gate: recompute``), inference still runs one matmul, and
the traced backward holds no tensor as wide as in_proj's output."""

from __future__ import annotations

import pytest
import torch
from recompute_models import assert_same_numbers, compile_with_aot_eager, loss_and_grads, seeded_build

import zoo
from zoo.errors import SpecError


def _spec(preset: str, in_proj: str, **params) -> dict:
    """The preset with ``in_proj`` (and ``params``) in every SSD mixer."""
    from zoo.overrides import spec_with_ssd_in_proj
    from zoo.training.runs import resolve_spec

    spec = spec_with_ssd_in_proj(resolve_spec(preset), in_proj)
    for layer in spec["layers"]:
        if "in_proj" in (layer["mixer"].get("params") or {}):
            layer["mixer"]["params"].update(params)
    return spec


def _joined_then_split(preset: str, layers: int | None = None, **params):
    ids = torch.randint(0, 200, (2, 40), generator=torch.Generator().manual_seed(1))
    joined = loss_and_grads(seeded_build(_spec(preset, "joined", **params), layers), ids)
    model = seeded_build(_spec(preset, "split", **params), layers)
    return joined, loss_and_grads(model, ids), model


@pytest.mark.parametrize(
    "preset, params",
    [
        ("mamba2-tiny", {}),
        ("transmamba-tiny", {}),
        ("transmamba-tiny", {"attn_gate": True}),
        ("hybrid-tiny", {}),
        ("transmamba-tiny", {"gate": "recompute"}),
    ],
)
def test_split_in_proj_keeps_the_numbers_eager(preset: str, params: dict) -> None:
    """Each output column is the same dot product either way, so the loss is the same to fp32
    rounding; in_proj's input gradient becomes a sum of three matmuls."""
    joined, split, model = _joined_then_split(preset, **params)
    ssd_blocks = [block for block in model.blocks if hasattr(block.mixer, "ssd")]
    assert ssd_blocks and all(block.mixer.ssd.split_in_proj for block in ssd_blocks)
    assert_same_numbers([joined, split])


@pytest.mark.parametrize("preset", ["mamba2-tiny", "transmamba-tiny"])
def test_split_in_proj_keeps_the_numbers_compiled(monkeypatch, preset: str) -> None:
    compile_with_aot_eager(monkeypatch)
    torch._dynamo.reset()  # no sizes marked dynamic by earlier tests' compiles of the same code
    ids = torch.randint(0, 200, (2, 40), generator=torch.Generator().manual_seed(1))
    results = []
    for in_proj in ("joined", "split"):
        spec = _spec(preset, in_proj)
        spec["layers"] = spec["layers"][:2]
        torch.manual_seed(0)
        results.append(loss_and_grads(zoo.build(spec, compile=True), ids))
    assert_same_numbers(results)


def test_split_in_proj_runs_one_matmul_without_gradients() -> None:
    """Inference (no gradients) takes the joined path: the same numbers, bit for bit, and one
    in_proj call."""
    model = seeded_build(_spec("transmamba-tiny", "split"), 1)
    ssd = model.blocks[0].mixer.ssd
    u = torch.randn(2, 7, model.spec.d_model)
    calls = []
    handle = ssd.in_proj.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        parts = ssd.project(u)
    handle.remove()
    assert calls == [1]
    expected = torch.split(ssd.in_proj(u), [ssd.d_inner, ssd.conv_channels, ssd.n_heads], dim=-1)
    for part, want in zip(parts, expected, strict=True):
        assert torch.equal(part, want)
    ids = torch.randint(0, 200, (2, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(model(ids), seeded_build(_spec("transmamba-tiny", "joined"), 1)(ids))


def _backward_widths(preset: str, in_proj: str) -> tuple[int, set[int]]:
    """(in_proj's output width, the last dims of every [B*T or B, T, ...] tensor the traced
    backward graph of a 1-layer model makes)."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    model = seeded_build(_spec(preset, in_proj), 1)
    width = model.blocks[0].mixer.ssd.in_proj.out_features
    batch, seq_len = 2, 40
    widths: set[int] = set()

    def record(graph, _inputs):
        for node in graph.graph.nodes:
            value = node.meta.get("val")
            if isinstance(value, torch.Tensor) and value.dim() >= 2:
                rows = value.shape[:-1].numel()
                if rows == batch * seq_len or tuple(value.shape[:2]) == (batch, seq_len):
                    widths.add(int(value.shape[-1]))
        return make_boxed_func(graph.forward)

    backend = aot_autograd(fw_compiler=lambda graph, _: make_boxed_func(graph.forward), bw_compiler=record)

    ids = torch.randint(0, 200, (batch, seq_len))
    torch._dynamo.reset()
    loss_and_grads(torch.compile(model, backend=backend, fullgraph=True), ids)
    torch._dynamo.reset()
    return width, widths


@pytest.mark.parametrize("preset", ["mamba2-tiny", "transmamba-tiny"])
def test_split_in_proj_leaves_no_joined_gradient_in_the_backward(preset: str) -> None:
    width, joined = _backward_widths(preset, "joined")
    assert width in joined, "the joined in_proj's backward builds its whole output gradient"
    width, split = _backward_widths(preset, "split")
    assert width not in split


def test_in_proj_value_is_checked() -> None:
    with pytest.raises(SpecError, match="in_proj"):
        spec = _spec("mamba2-tiny", "joined")
        spec["layers"][0]["mixer"]["params"]["in_proj"] = "fused"  # a hand-written spec: the schema's check
        zoo.build(spec, device="meta")


def test_ssd_in_proj_override_is_checked_and_spares_attention_layers() -> None:
    from zoo.errors import ZooError
    from zoo.overrides import spec_with_ssd_in_proj
    from zoo.training.runs import resolve_spec

    out = spec_with_ssd_in_proj(resolve_spec("hybrid-tiny"), "joined")
    kinds = {layer["mixer"]["name"]: (layer["mixer"].get("params") or {}).get("in_proj") for layer in out["layers"]}
    assert kinds == {"attention": None, "mamba2": "joined"}
    ssd_blocks = [block.mixer.ssd for block in zoo.build(out).blocks if hasattr(block.mixer, "ssd")]
    assert ssd_blocks and not any(ssd.split_in_proj for ssd in ssd_blocks)
    with pytest.raises(ZooError, match="ssd in_proj: expected one of split, joined"):
        spec_with_ssd_in_proj(out, "fused")
