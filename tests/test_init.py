"""Init recipes (``spec.init``): each gives the statistics its reference implementation does."""

from __future__ import annotations

import math

import pytest
import torch

import zoo


def _model(preset: str, **overrides):
    spec = {**zoo.resolve_spec(preset).model_dump(mode="json"), **overrides}
    torch.manual_seed(0)
    return zoo.build(spec, device="cpu")


def _std(t: torch.Tensor) -> float:
    return float(t.detach().float().std())


def test_llama_recipe_is_normal_everywhere_with_an_untied_head() -> None:
    model = _model("transformer-tiny")
    assert model.spec.init == "llama" and model.lm_head.weight is not model.embedding.weight
    block = model.blocks[0]
    mixer, mlp = block.mixer, block.mlp
    weights = (model.embedding.weight, model.lm_head.weight, mixer.q_proj.weight, mixer.o_proj.weight, mlp.down.weight)
    for weight in weights:
        assert _std(weight) == pytest.approx(0.02, rel=0.05)


def test_mamba_recipe_rescales_residual_outputs_of_pytorch_default_linears() -> None:
    model = _model("mamba2-tiny")
    assert model.spec.init == "mamba" and model.lm_head.weight is model.embedding.weight
    n_branches = 2 * model.n_layers
    in_proj, out_proj = model.blocks[0].mixer.ssd.in_proj, model.blocks[0].mixer.ssd.out_proj
    uniform_std = lambda fan_in: 1 / math.sqrt(3 * fan_in)  # noqa: E731  (Kaiming-uniform, a = sqrt(5))
    assert _std(model.embedding.weight) == pytest.approx(0.02, rel=0.05)
    assert _std(in_proj.weight) == pytest.approx(uniform_std(in_proj.in_features), rel=0.05)
    assert float(in_proj.weight.detach().abs().max()) <= 1 / math.sqrt(in_proj.in_features)
    expected = uniform_std(out_proj.in_features) / math.sqrt(n_branches)
    assert _std(out_proj.weight) == pytest.approx(expected, rel=0.05)
    down = model.blocks[0].mlp.down
    assert _std(down.weight) == pytest.approx(uniform_std(down.in_features) / math.sqrt(n_branches), rel=0.05)


def test_mamba_recipe_keeps_mamba2s_dt_and_A() -> None:
    ssd = _model("transmamba-tiny").blocks[0].mixer.ssd
    dt = torch.nn.functional.softplus(ssd.dt_bias)
    assert float(dt.min()) >= 1e-3 * 0.999 and float(dt.max()) <= 0.1 * 1.001
    A = ssd.A_log.exp()
    assert float(A.min()) >= 1 and float(A.max()) <= 16 and bool((ssd.D == 1).all())


def test_gpt2_recipe_is_the_default() -> None:
    model = _model("transformer-tiny", init="gpt2", tie_embeddings=True)
    block = model.blocks[0]
    assert _std(block.mixer.q_proj.weight) == pytest.approx(0.02, rel=0.05)
    assert _std(block.mixer.o_proj.weight) == pytest.approx(0.02 / math.sqrt(2 * model.n_layers), rel=0.05)
    spec = zoo.resolve_spec("transformer-tiny").model_dump(mode="json")
    del spec["init"]
    assert zoo.resolve_spec(spec).init == "gpt2"


def test_an_unknown_recipe_names_the_field() -> None:
    spec = {**zoo.resolve_spec("mamba2-tiny").model_dump(mode="json"), "init": "xavier"}
    with pytest.raises(zoo.SpecError, match="init"):
        zoo.load_spec(spec)
