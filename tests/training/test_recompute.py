"""Selective activation checkpointing (zoo.training.recompute): which ops are kept, that the
numbers do not change (eager and compiled), and that the step keeps less."""

from __future__ import annotations

import pytest
import torch
from recompute_models import (
    assert_same_numbers,
    compile_with_aot_eager,
    loss_and_grads,
    seeded_preset,
    with_backend,
    with_norm_output,
)

import zoo
from zoo.training import distributed
from zoo.training.memory_profile import profile_training_memory
from zoo.training.recompute import declared_recomputable, keeps


def test_matmuls_attention_and_unknown_custom_ops_are_kept_the_rest_recomputed() -> None:
    aten = torch.ops.aten
    cheap = frozenset({"zoo_triton_ssd::causal_conv1d_fwd"})
    for op in (aten.mm.default, aten.addmm.default, aten.bmm.default, aten._scaled_dot_product_flash_attention.default):
        assert keeps(op, cheap), op
    for op in (aten.mul.Tensor, aten.silu.default, aten.rsqrt.default, aten.cat.default, aten.convolution.default):
        assert not keeps(op, cheap), op
    assert keeps("zoo_triton_ssd::ssd_fwd", cheap)  # a custom op nobody declared cheap: kept
    assert not keeps("zoo_triton_ssd::causal_conv1d_fwd", cheap)


def test_the_triton_plugin_declares_its_conv_and_norm_cheap() -> None:
    pytest.importorskip("triton")
    import zoo_plugins.triton_ssd  # noqa: F401  (registers the backends where entry points are not installed)

    declared = declared_recomputable()
    assert {"zoo_triton_ssd::causal_conv1d_fwd", "zoo_triton_ssd::gated_rms_norm_fwd"} <= declared
    assert "zoo_triton_ssd::ssd_fwd" not in declared


def _policy_calls(monkeypatch) -> list[int]:
    """Counts the selective contexts made: the policy really wraps the blocks."""
    from zoo.training import recompute

    calls = [0]
    real = recompute.create_selective_checkpoint_contexts

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(recompute, "create_selective_checkpoint_contexts", counting)
    return calls


@pytest.mark.parametrize("preset", [pytest.param("transmamba-tiny", marks=pytest.mark.slow), "transformer-tiny"])
def test_selective_checkpointing_compiled_matches_eager_without_it(monkeypatch, preset: str) -> None:
    """fullgraph compile (aot_eager: dynamo, the joint graph and its partition, no codegen)
    with the policy's tags against the eager model without checkpointing."""
    compile_with_aot_eager(monkeypatch)
    calls = _policy_calls(monkeypatch)
    ids = torch.randint(0, 200, (2, 48), generator=torch.Generator().manual_seed(1))
    results = []
    for policy, compile in (("none", False), ("selective", True)):
        model = seeded_preset(preset)
        distributed.prepare_model(model, context=None, activation_checkpointing=policy, compile=compile)
        results.append(loss_and_grads(model, ids))
    assert calls[0] > 0
    assert_same_numbers(results)


@pytest.mark.slow
def test_selective_checkpointing_keeps_less_and_drops_the_recomputed_sites() -> None:
    memory = {}
    for policy in ("none", "selective"):
        model = with_norm_output("mamba2-tiny", "save")  # kept without the policy, so it shows
        distributed.prepare_model(model, context=None, activation_checkpointing=policy)
        memory[policy] = profile_training_memory(model, batch=2, seq_len=64)
    none, selective = memory["none"], memory["selective"]
    assert selective.saved_bytes < 0.5 * none.saved_bytes
    ops = {policy: {(site.where, site.op) for site in m.saved} for policy, m in memory.items()}
    # SwiGLU's product and the gated norm's output: kept without the policy, recomputed with it
    for site in (("blocks.*.mlp", "aten.mul"), ("blocks.*.mixer.ssd.norm", "prims.convert_element_type")):
        assert site in ops["none"] and site not in ops["selective"], site
    # the projections' matmul outputs are kept either way: in_proj's parts (in_proj: split, one
    # matmul each, z's of width d_inner among them) and out_proj
    d_inner = model.blocks[0].mixer.ssd.d_inner
    assert any(s.op == "aten.mm" and s.shape[-1] == d_inner for s in selective.saved)
    assert ("blocks.*.mixer.ssd.out_proj", "aten.mm") in ops["selective"]


@pytest.mark.slow
def test_selective_checkpointing_over_the_triton_plugin_keeps_the_numbers(monkeypatch) -> None:
    """Eager, Triton interpreter: the plugin's custom ops under the policy's dispatch mode (the
    SSD scan kept, the conv and the norm recomputed) give the same loss and gradients."""
    pytest.importorskip("triton")
    from zoo.overrides import spec_with_backends
    from zoo.training.runs import resolve_spec

    ssd = "triton:states=recompute,chunk_size=16"
    overrides = {"ssm": ssd, "converter": ssd, "conv": "triton", "norm": "triton"}
    calls = _policy_calls(monkeypatch)
    ids = torch.randint(0, 200, (2, 48), generator=torch.Generator().manual_seed(1))
    results = []
    spec, _ = spec_with_backends(resolve_spec("transmamba-tiny"), overrides)
    spec["layers"] = spec["layers"][:2]  # two blocks keep the interpreter's time down
    for policy in ("none", "selective"):
        torch.manual_seed(0)
        model = zoo.build(spec)
        distributed.prepare_model(model, context=None, activation_checkpointing=policy)
        results.append(loss_and_grads(model, ids))
    assert calls[0] >= len(model.blocks)  # eager: a context per block call
    assert_same_numbers(results, exact_loss=True)


# ---------------------------------------------------------------- norm: output=recompute


# ---------------------------------------------------------------- the cheap policy


def test_the_cheap_policy_recomputes_only_declared_ops_and_leaves_aten_to_the_partition() -> None:
    from torch.utils.checkpoint import CheckpointPolicy

    from zoo.training.recompute import cheap_decision

    aten = torch.ops.aten
    cheap = frozenset({"zoo_triton_ssd::causal_conv1d_fwd"})
    assert cheap_decision("zoo_triton_ssd::causal_conv1d_fwd", cheap) is CheckpointPolicy.PREFER_RECOMPUTE
    for op in (aten.mm.default, aten.mul.Tensor, aten.silu.default, aten.cat.default):
        assert cheap_decision(op, cheap) is CheckpointPolicy.PREFER_SAVE, op
    assert cheap_decision("zoo_triton_ssd::ssd_fwd", cheap) is CheckpointPolicy.MUST_SAVE


def _triton_conv_model(preset: str, layers: int = 2) -> torch.nn.Module:
    pytest.importorskip("triton")
    return with_backend(preset, "conv", "triton", layers=layers)


@pytest.mark.slow
def test_the_cheap_policy_keeps_the_numbers_over_the_triton_conv() -> None:
    """Eager, Triton interpreter: the conv recomputed in the backward, losses and gradients equal."""
    from zoo.training import recompute

    ids = torch.randint(0, 200, (2, 40), generator=torch.Generator().manual_seed(1))
    decided: list[str] = []
    real = recompute.cheap_decision

    def recording(op, names):
        decision = real(op, names)
        decided.append(f"{op}:{decision.name}")
        return decision

    recompute.cheap_decision = recording
    try:
        results = []
        for policy in ("none", "cheap"):
            model = _triton_conv_model("transmamba-tiny")
            distributed.prepare_model(model, context=None, activation_checkpointing=policy)
            results.append(loss_and_grads(model, ids))
    finally:
        recompute.cheap_decision = real
    # the policy ran, and recomputed the conv (not every op, as full checkpointing would)
    assert any("causal_conv1d_fwd" in d and d.endswith("PREFER_RECOMPUTE") for d in decided)
    assert any(d.endswith("PREFER_SAVE") for d in decided)
    assert_same_numbers(results, exact_loss=True)


@pytest.mark.slow
def test_the_cheap_policy_drops_the_conv_outputs_and_nothing_else() -> None:
    """Traced as compiled: the conv's outputs go; every other site keeps its size."""
    memory = {}
    for policy in ("none", "cheap"):
        model = _triton_conv_model("mamba2-tiny", layers=4)
        distributed.prepare_model(model, context=None, activation_checkpointing=policy)
        memory[policy] = profile_training_memory(model, batch=2, seq_len=64)
    sites = {policy: {(s.where, s.op): s.nbytes for s in m.saved} for policy, m in memory.items()}
    conv = [site for site in sites["none"] if "causal_conv1d_fwd" in site[1]]
    assert conv and not any("causal_conv1d_fwd" in site[1] for site in sites["cheap"])
    assert memory["cheap"].saved_bytes < memory["none"].saved_bytes
    assert sites["cheap"] == {site: n for site, n in sites["none"].items() if site not in conv}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("output", "policy"),
    [("recompute", "selective"), ("save", "cheap")],
    ids=["norm-checkpoint-nested-in-selective", "cheap"],
)
def test_the_policies_compiled_match_eager_without_them(monkeypatch, output: str, policy: str) -> None:
    """fullgraph compile (aot_eager) of the per-block wrapping: the cheap policy, and the norm's
    own checkpoint nested in a block's selective one, against the eager model without either."""
    compile_with_aot_eager(monkeypatch)
    ids = torch.randint(0, 200, (2, 40), generator=torch.Generator().manual_seed(1))
    results = []
    for variant, ac, compile in (("save", "none", False), (output, policy, True)):
        model = with_norm_output("transmamba-tiny", variant, layers=2)
        distributed.prepare_model(model, context=None, activation_checkpointing=ac, compile=compile)
        results.append(loss_and_grads(model, ids))
    assert_same_numbers(results)
