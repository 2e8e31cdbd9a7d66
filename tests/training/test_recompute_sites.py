"""Recompute overrides of single sites (the gated norm's output, the causal conv's outputs,
SwiGLU's hidden, the SSD mixers' gate z): the numbers do not change (eager and compiled),
inference takes no checkpoint, and under compile only the named tensors leave the saved set.
The checkpointing policies are in test_recompute.py."""

from __future__ import annotations

import pytest
import torch
from recompute_models import (
    assert_equal_within,
    assert_same_numbers,
    compile_with_aot_eager,
    loss_and_grads,
    save_then_recompute,
    seeded_build,
    seeded_preset,
    with_backend,
    with_norm_output,
)

import zoo
from zoo.training import distributed
from zoo.training.memory_profile import profile_training_memory


@pytest.mark.parametrize("preset", ["mamba2-tiny", "transmamba-tiny"])
def test_norm_output_recompute_keeps_the_numbers_eager(monkeypatch, preset: str) -> None:
    saved, recomputed, model, calls = save_then_recompute(lambda output: with_norm_output(preset, output), monkeypatch)
    assert calls >= len(model.blocks)  # each block's norm ran under the checkpoint
    # mamba2: the same ops again, bit for bit; transmamba: out_proj per row block, rounding apart
    tol = {"rtol": 0, "atol": 0} if preset.startswith("mamba2") else {"rtol": 1e-5, "atol": 1e-6}
    assert_equal_within([saved, recomputed], **tol)


def test_norm_output_recompute_changes_nothing_without_gradients() -> None:
    """Inference: no checkpoint, and TransMamba joins its row blocks before out_proj again, so
    the logits equal those of the kept output bit for bit (and recompute is the default)."""
    ids = torch.randint(0, 200, (2, 40), generator=torch.Generator().manual_seed(1))
    default = seeded_preset("transmamba-tiny")
    assert all(block.mixer.norm.recompute_output for block in default.blocks)
    with torch.no_grad():
        logits = {output: with_norm_output("transmamba-tiny", output)(ids) for output in ("save", "recompute")}
        assert torch.equal(default(ids), logits["recompute"])
    assert torch.equal(logits["recompute"], logits["save"])


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["mamba2-tiny", "transmamba-tiny"])
def test_norm_output_recompute_drops_the_saved_norm_output_under_compile(preset: str) -> None:
    memory = {
        output: profile_training_memory(with_norm_output(preset, output), batch=2, seq_len=64)
        for output in ("save", "recompute")
    }
    ops = {output: {(s.where, s.op) for s in m.saved} for output, m in memory.items()}
    # the norm's output, and in transmamba's blocks with 0 < P < T the join of its row blocks
    sites = [("blocks.*.mixer.ssd.norm", "prims.convert_element_type")]
    if preset.startswith("transmamba"):
        sites.append(("blocks.*.mixer", "aten.cat"))
    for site in sites:
        assert site in ops["save"] and site not in ops["recompute"], site
    assert memory["recompute"].saved_bytes < memory["save"].saved_bytes


# ---------------------------------------------------------------- the conv's ``output: recompute``


def _with_conv_output(preset: str, output: str, *, conv: str = "torch", layers: int | None = None) -> torch.nn.Module:
    if conv == "triton":
        pytest.importorskip("triton")
    return with_backend(preset, "conv", f"{conv}:output={output}", layers=layers)


@pytest.mark.parametrize("preset", ["mamba2-tiny", "transmamba-tiny"])
def test_conv_output_recompute_keeps_the_numbers_eager(monkeypatch, preset: str) -> None:
    saved, recomputed, model, calls = save_then_recompute(lambda output: _with_conv_output(preset, output), monkeypatch)
    assert all(block.mixer.ssd.conv_backend.recompute_output for block in model.blocks)
    assert calls >= 2 * len(model.blocks)  # each block's conv (and norm) ran under a checkpoint
    assert_equal_within([saved, recomputed], rtol=0, atol=0)  # the same ops again


def test_conv_output_is_saved_by_default_and_inference_takes_no_checkpoint(monkeypatch) -> None:
    ids = torch.randint(0, 200, (2, 40), generator=torch.Generator().manual_seed(1))
    assert not any(block.mixer.ssd.conv_backend.recompute_output for block in seeded_preset("mamba2-tiny").blocks)
    model = _with_conv_output("mamba2-tiny", "recompute")
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: pytest.fail("checkpoint without grad"))
    with torch.no_grad():
        assert torch.equal(model(ids), _with_conv_output("mamba2-tiny", "save")(ids))


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["mamba2-tiny", "transmamba-tiny"])
def test_conv_output_recompute_drops_the_conv_outputs_and_nothing_else_under_compile(preset: str) -> None:
    """Traced as one compiled graph (no per-block wrapping): with the Triton conv, its outputs
    stop being saved and every other site keeps its size."""
    memory = {
        output: profile_training_memory(_with_conv_output(preset, output, conv="triton", layers=2), batch=2, seq_len=64)
        for output in ("save", "recompute")
    }
    sites = {output: {(s.where, s.op): s.nbytes for s in m.saved} for output, m in memory.items()}
    conv = [site for site in sites["save"] if "causal_conv1d_fwd" in site[1]]
    assert conv and not any("causal_conv1d_fwd" in site[1] for site in sites["recompute"])
    assert memory["recompute"].saved_bytes < memory["save"].saved_bytes
    assert sites["recompute"] == {site: n for site, n in sites["save"].items() if site not in conv}


# ---------------------------------------------------------------- SwiGLU's ``hidden: recompute``


def _with_mlp_hidden(preset: str, hidden: str, *, layers: int | None = None) -> torch.nn.Module:
    from zoo.overrides import spec_with_mlp_hidden
    from zoo.training.runs import resolve_spec

    return seeded_build(spec_with_mlp_hidden(resolve_spec(preset), hidden), layers)


@pytest.mark.parametrize("preset", ["transformer-tiny", "transmamba-tiny"])
def test_mlp_hidden_recompute_keeps_the_numbers_eager(monkeypatch, preset: str) -> None:
    saved, recomputed, model, calls = save_then_recompute(lambda hidden: _with_mlp_hidden(preset, hidden), monkeypatch)
    assert all(block.mlp.recompute_hidden for block in model.blocks)
    assert calls >= len(model.blocks)  # each block's SwiGLU product ran under a checkpoint
    assert_equal_within([saved, recomputed], rtol=0, atol=0)  # the same ops again


def test_mlp_hidden_is_saved_by_default_and_inference_takes_no_checkpoint(monkeypatch) -> None:
    ids = torch.randint(0, 200, (2, 40), generator=torch.Generator().manual_seed(1))
    assert not any(block.mlp.recompute_hidden for block in seeded_preset("transformer-tiny").blocks)
    model = _with_mlp_hidden("transformer-tiny", "recompute")
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: pytest.fail("checkpoint without grad"))
    with torch.no_grad():
        assert torch.equal(model(ids), _with_mlp_hidden("transformer-tiny", "save")(ids))


def test_mlp_hidden_override_is_checked_and_spares_layers_without_an_mlp() -> None:
    from zoo.errors import ZooError
    from zoo.overrides import spec_with_mlp_hidden
    from zoo.training.runs import resolve_spec

    spec = resolve_spec("transformer-tiny")
    spec["layers"][0] = {**spec["layers"][0], "mlp": {"kind": "none"}}
    out = spec_with_mlp_hidden(spec, "recompute")
    assert out["layers"][0]["mlp"] == {"kind": "none"}
    assert all(layer["mlp"]["hidden"] == "recompute" for layer in out["layers"][1:])
    with pytest.raises(ZooError, match="mlp hidden: expected one of save, recompute"):
        spec_with_mlp_hidden(spec, "drop")


@pytest.mark.parametrize("preset", ["transformer-tiny", "transmamba-tiny"])
def test_mlp_hidden_recompute_drops_the_product_and_nothing_else_under_compile(preset: str) -> None:
    """Traced as one compiled graph: the product silu(gate) * up stops being saved and every
    other site keeps its size."""
    memory = {
        hidden: profile_training_memory(_with_mlp_hidden(preset, hidden, layers=2), batch=2, seq_len=64)
        for hidden in ("save", "recompute")
    }
    sites = {hidden: {(s.where, s.op): s.nbytes for s in m.saved} for hidden, m in memory.items()}
    product = ("blocks.*.mlp", "aten.mul")
    assert product in sites["save"] and product not in sites["recompute"]
    assert sites["recompute"] == {site: n for site, n in sites["save"].items() if site != product}


# ---------------------------------------------------------------- the SSD mixers' ``gate: recompute``


def _with_ssd_gate(preset: str, gate: str, *, layers: int | None = None, **params) -> torch.nn.Module:
    from zoo.overrides import spec_with_ssd_gate
    from zoo.training.runs import resolve_spec

    spec = spec_with_ssd_gate(resolve_spec(preset), gate)
    for layer in spec["layers"]:
        if layer["mixer"]["name"] == "transmamba":
            layer["mixer"]["params"].update(params)
    return seeded_build(spec, layers)


@pytest.mark.parametrize(
    "preset, params",
    [("mamba2-tiny", {}), ("transmamba-tiny", {}), ("transmamba-tiny", {"attn_gate": True}), ("hybrid-tiny", {})],
)
def test_ssd_gate_recompute_keeps_the_numbers_eager(monkeypatch, preset: str, params: dict) -> None:
    """The same loss bit for bit (z's own matmul gives the same numbers here); in_proj's
    input gradient is now the sum of two matmuls, so the gradients agree to fp32 rounding."""
    saved, recomputed, model, calls = save_then_recompute(
        lambda gate: _with_ssd_gate(preset, gate, **params), monkeypatch
    )
    ssd_blocks = [block for block in model.blocks if hasattr(block.mixer, "ssd")]
    assert ssd_blocks and all(block.mixer.ssd.recompute_gate for block in ssd_blocks)
    assert calls >= 2 * len(ssd_blocks)  # each SSD block's gated norm ran under the gate's checkpoint
    torch.testing.assert_close(recomputed[0], saved[0], rtol=0, atol=0)
    assert_same_numbers([saved, recomputed])


def test_ssd_gate_is_saved_by_default_and_inference_forms_z_at_once() -> None:
    """Without gradients no ``RecomputedGate`` is made: one in_proj matmul, as with ``save``."""
    from zoo.layers.mixers.ssd_base import RecomputedGate

    assert not any(block.mixer.ssd.recompute_gate for block in seeded_preset("transmamba-tiny").blocks)
    model = _with_ssd_gate("transmamba-tiny", "recompute")
    u = torch.randn(2, 5, model.spec.d_model)
    with torch.no_grad():
        z, *_ = model.blocks[0].mixer.ssd.project(u)
    assert isinstance(z, torch.Tensor)
    z, *_ = model.blocks[0].mixer.ssd.project(u)
    assert isinstance(z, RecomputedGate)
    assert z[:, 2:].u.shape == (2, 3, model.spec.d_model)  # rows taken, the weight kept
    torch.testing.assert_close(z[:, 2:].value(), model.blocks[0].mixer.ssd.in_proj(u)[:, 2:, : z.weight.shape[0]])


def test_ssd_gate_recompute_keeps_generation_exact() -> None:
    ids = torch.randint(0, 200, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(_with_ssd_gate("transmamba-tiny", "recompute")(ids), seeded_preset("transmamba-tiny")(ids))


def test_ssd_gate_override_is_checked_and_spares_attention_layers() -> None:
    from zoo.errors import ZooError
    from zoo.overrides import spec_with_ssd_gate
    from zoo.training.runs import resolve_spec

    out = spec_with_ssd_gate(resolve_spec("hybrid-tiny"), "recompute")
    for layer in out["layers"]:
        if layer["mixer"]["name"] == "attention":
            assert "gate" not in (layer["mixer"].get("params") or {})
        else:
            assert layer["mixer"]["params"]["gate"] == "recompute"
    with pytest.raises(ZooError, match="ssd gate: expected one of save, recompute"):
        spec_with_ssd_gate(out, "drop")
    with pytest.raises(ZooError, match="gate"):  # the schema's own check, for a hand-written spec
        bad = resolve_spec("mamba2-tiny")
        bad["layers"][0]["mixer"]["params"]["gate"] = "drop"
        zoo.build(bad, device="meta")


@pytest.mark.parametrize("preset", ["mamba2-tiny", "transmamba-tiny"])
def test_ssd_gate_recompute_drops_z_under_compile(preset: str) -> None:
    """Traced as one compiled graph: z's own matmul output (in_proj: split, the default) stops
    being saved, and the saved bytes fall by at least z's bf16 size per layer."""
    memory = {
        gate: profile_training_memory(_with_ssd_gate(preset, gate, layers=2), batch=2, seq_len=64)
        for gate in ("save", "recompute")
    }
    d_inner = seeded_preset(preset).blocks[0].mixer.ssd.d_inner

    def z_sites(gate: str) -> list:
        return [s for s in memory[gate].saved if s.op == "aten.mm" and s.shape[-1] == d_inner and "mixer" in s.where]

    assert z_sites("save") and not z_sites("recompute")
    z_bytes = 2 * 2 * 64 * d_inner * 2  # layers x batch x T x d_inner x bf16
    assert memory["save"].saved_bytes - memory["recompute"].saved_bytes >= z_bytes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the Triton backends)")
def test_ssd_gate_recompute_keeps_the_numbers_on_cuda_with_the_triton_backends() -> None:
    """The CPU test's check on the GPU, over the backends ``auto`` picks there (Triton SSD, conv
    and converter): compiled in fp32, to fp32 rounding; eager under bf16 autocast, the loss and
    gradients as close as two bf16 matmul orders allow (two compiles, not four: the compiled
    bf16 path is what the throughput benchmark's ``--ssd-gate recompute`` rows train).
    transmamba-tiny's V9 schedule has a layer at P = 0 (Mamba2's path) and layers with both
    paths."""
    preset = "transmamba-tiny"
    from zoo.overrides import spec_with_ssd_gate
    from zoo.training.runs import resolve_spec

    ids = torch.randint(0, 200, (4, 256), generator=torch.Generator().manual_seed(1)).cuda()
    cases = ((None, True, 1e-5, (1e-4, 1e-5)), (torch.bfloat16, False, 2e-3, (5e-2, 1e-3)))
    for autocast, compile, loss_tol, grad_tol in cases:
        results = []
        for gate in ("save", "recompute"):
            torch.manual_seed(0)
            model = zoo.build(spec_with_ssd_gate(resolve_spec(preset), gate), device="cuda", compile=compile)
            with torch.autocast("cuda", dtype=autocast, enabled=autocast is not None):
                results.append(loss_and_grads(model, ids))
        (loss, grads), (other_loss, other_grads) = results
        torch.testing.assert_close(other_loss, loss, rtol=loss_tol, atol=loss_tol)
        for name, grad in grads.items():
            torch.testing.assert_close(other_grads[name], grad, rtol=grad_tol[0], atol=grad_tol[1], msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["mamba2-tiny", "transmamba-tiny"])
def test_ssd_gate_recompute_compiled_matches_eager(monkeypatch, preset: str) -> None:
    """fullgraph compile (aot_eager) with the gate's checkpoint against the eager model that keeps z."""
    compile_with_aot_eager(monkeypatch)
    ids = torch.randint(0, 200, (2, 48), generator=torch.Generator().manual_seed(1))
    results = []
    for gate, compile in (("save", False), ("recompute", True)):
        model = _with_ssd_gate(preset, gate)
        distributed.prepare_model(model, context=None, activation_checkpointing="none", compile=compile)
        results.append(loss_and_grads(model, ids))
    assert_same_numbers(results)
