"""zoo.training.memory_profile: what a compiled step keeps for the backward, sized from its
partitioned forward graph (CPU; nothing runs)."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.training.memory_profile import forward_graph, profile_training_memory, saved_sites


def test_views_of_one_tensor_count_once_and_inputs_count_nothing() -> None:
    """A forward graph whose saved outputs are a base, two views of it and an input: the
    base counts once, the input not at all."""
    from torch.fx.experimental.proxy_tensor import make_fx

    def forward(x: torch.Tensor, weight: torch.Tensor):
        h = x @ weight  # [16, 8] fp32: 512 bytes
        a, b = h.split(4, dim=-1)
        return (a.sin() * b.cos()).sum(), a, b, h.t(), weight

    graph = make_fx(forward, tracing_mode="fake")(torch.randn(16, 8), torch.randn(8, 8))
    sites = saved_sites(graph, 1)
    assert [(site.op, site.count, site.nbytes) for site in sites] == [("aten.mm", 1, 16 * 8 * 4)]


def test_a_traced_step_keeps_what_its_backward_needs() -> None:
    weight = torch.randn(8, 8, requires_grad=True)

    def step(x: torch.Tensor) -> torch.Tensor:
        h = x @ weight
        a, b = h.split(4, dim=-1)
        return (a.sin() * b.cos()).sum()

    graph, n_returns = forward_graph(step, torch.randn(16, 8))
    assert n_returns == 1
    # whether the partition keeps h or the two pieces, the step holds h's 512 bytes
    assert sum(site.nbytes for site in saved_sites(graph, n_returns)) == 16 * 8 * 4


def test_profile_of_a_preset_counts_loss_weights_and_saved_activations() -> None:
    model = zoo.build("transformer-tiny")
    batch, seq_len, vocab = 2, 32, model.spec.vocab_size
    memory = profile_training_memory(model, batch=batch, seq_len=seq_len)
    n_params = sum(p.numel() for p in model.parameters())
    assert memory.n_params == n_params and memory.state_bytes == 16 * n_params
    # bf16 logits, and the fp32 log-probabilities the eager cross-entropy keeps
    assert batch * seq_len * vocab * 6 <= memory.loss_bytes <= batch * seq_len * vocab * 6 + 64
    wheres = {site.where for site in memory.saved}
    assert any(where.startswith("blocks.*.mixer") for where in wheres), wheres
    assert any(where.startswith("blocks.*.mlp") for where in wheres), wheres
    assert memory.total_bytes == memory.saved_bytes + memory.loss_bytes + memory.state_bytes
    # the chunked loss lives in the graph: no logits outside it
    chunked = profile_training_memory(model, batch=batch, seq_len=seq_len, loss="chunked")
    assert chunked.loss_bytes == 0 and chunked.saved_bytes > 0
    groups = memory.by_group({"mlp": r"\.mlp", "mixer": r"\.mixer"})
    assert sum(groups.values()) == memory.saved_bytes and groups["mlp"] > 0 and groups["mixer"] > 0
    with pytest.raises(ValueError, match="loss must be"):
        profile_training_memory(model, batch=1, seq_len=8, loss="fused")


@pytest.mark.slow
def test_recomputed_ssd_states_leave_the_saved_set() -> None:
    """``ssm: {name: triton, params: {states: recompute}}`` removes exactly the chunk states
    ([B, H, T / chunk, P, N] per layer) from what the step keeps (Triton interpreter)."""
    from zoo.overrides import spec_with_backends
    from zoo.training.runs import resolve_spec

    batch, seq_len = 2, 64
    memory = {}
    for states in ("save", "recompute"):
        choice = f"triton:states={states},chunk_size=16"
        spec, _ = spec_with_backends(resolve_spec("mamba2-tiny"), {"ssm": choice, "conv": "triton"})
        model = zoo.build(spec)
        memory[states] = profile_training_memory(model, batch=batch, seq_len=seq_len)
    ssd = model.blocks[0].mixer.ssd
    n_layers = len(model.blocks)
    heads, head_dim, state_dim = ssd.n_heads, ssd.headdim, ssd.d_state
    states_bytes = n_layers * batch * heads * (seq_len // 16) * head_dim * state_dim * 2  # bf16
    assert memory["save"].saved_bytes - memory["recompute"].saved_bytes == states_bytes
    assert any(site.op == "zoo_triton_ssd.ssd_fwd[2]" for site in memory["save"].saved)
    assert not any(site.op == "zoo_triton_ssd.ssd_fwd[2]" for site in memory["recompute"].saved)
