"""Zoo Mamba2 <-> transformers' Mamba2ForCausalLM: equal logits both ways (fp32, CPU torch path)."""

from __future__ import annotations

import json
import math

import pytest
import torch

import zoo
from zoo.interop.hf_mamba2 import export_mamba2, hf_config, import_mamba2, unexpressible, zoo_spec

MIXER = {"name": "mamba2", "params": {"d_state": 8, "headdim": 16, "n_groups": 2, "d_conv": 3}}
SPEC = {"vocab_size": 300, "d_model": 32, "layers": [{"mixer": MIXER, "mlp": {"kind": "none"}}] * 2}
HF_SHAPES = {
    "vocab_size": 300,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "state_size": 8,
    "head_dim": 16,
    "num_heads": 4,
    "n_groups": 2,
    "expand": 2,
    "conv_kernel": 3,
}


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers", reason="transformers is not installed (pip install 'zoo[hf]')")


@torch.no_grad()
def _perturb(model: torch.nn.Module) -> None:
    # Norm weights start at 1 and D at 1: move every weight so a swapped name cannot hide.
    for param in model.parameters():
        param.add_(0.1 * torch.randn_like(param))


def _ids() -> torch.Tensor:
    return torch.randint(0, 300, (2, 37))  # odd length, above HF's chunk-free short path


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_export_then_transformers_gives_equal_logits(tmp_path, transformers, tie) -> None:
    model = zoo.build({**SPEC, "tie_embeddings": tie}).eval()
    _perturb(model)
    export_mamba2(model, tmp_path / "hf")
    hf = transformers.Mamba2ForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.tie_word_embeddings is tie
    ids = _ids()
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_transformers_then_import_gives_equal_logits(tmp_path, transformers, tie) -> None:
    hf = transformers.Mamba2ForCausalLM(transformers.Mamba2Config(**HF_SHAPES, tie_word_embeddings=tie)).eval()
    _perturb(hf)
    hf.save_pretrained(tmp_path / "hf")
    ids = _ids()
    with torch.no_grad():
        expected = hf(ids).logits
        for source in (hf, tmp_path / "hf"):  # an instance, and its saved directory
            model = import_mamba2(source)
            assert not model.training and model.spec.tie_embeddings is tie
            torch.testing.assert_close(model(ids), expected, rtol=1e-5, atol=1e-5)


def test_exported_tokenizer_loads_in_transformers(tmp_path, transformers) -> None:
    from zoo.data.tokenizer import ByteTokenizer

    byte = ByteTokenizer()
    export_mamba2(zoo.build(SPEC), tmp_path / "hf", tokenizer=byte)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tok("héllo ✓").input_ids == byte.encode("héllo ✓")
    assert (hf_tok.pad_token_id, hf_tok.bos_token_id, hf_tok.eos_token_id) == (byte.pad_id, byte.bos_id, byte.eos_id)
    config = transformers.Mamba2Config.from_pretrained(tmp_path / "hf")
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (byte.pad_id, byte.bos_id, byte.eos_id)


def test_config_round_trip() -> None:
    spec = zoo.load_spec(SPEC)
    back = zoo.load_spec(zoo_spec(hf_config(spec)))
    assert hf_config(back) == hf_config(spec)
    assert back.norm == spec.norm and [b.mlp.kind for b in back.layers] == ["none", "none"]


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda s: {**s, "layers": [{"mixer": MIXER}] * 2}, "layers.0.mlp is 'swiglu'"),
        (
            lambda s: {
                **s,
                "layers": [
                    s["layers"][0],
                    {"mixer": {"name": "attention", "params": {"n_heads": 2}}, "mlp": {"kind": "none"}},
                ],
            },
            "layers.1.mixer is 'attention'",
        ),
        (lambda s: {**s, "norm": {"kind": "layernorm"}}, "norm.kind is 'layernorm'"),
        (
            lambda s: {
                **s,
                "layers": [
                    s["layers"][0],
                    {
                        "mixer": {
                            "name": "mamba2",
                            "params": {"d_state": 16, "headdim": 16, "n_groups": 2, "d_conv": 3},
                        },
                        "mlp": {"kind": "none"},
                    },
                ],
            },
            "layers.1.mixer.params.d_state",
        ),
        (lambda s: {**s, "norm": {"eps": 1e-6}}, "norm_eps"),
    ],
    ids=["mlp", "attention", "layernorm", "mixed-shapes", "eps"],
)
def test_unexpressible_specs_are_named(tmp_path, change, named) -> None:
    model = zoo.build(change(SPEC))
    assert any(named in problem for problem in unexpressible(model.spec))
    with pytest.raises(zoo.ZooError, match="cannot be written as HF Mamba2"):
        export_mamba2(model, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_transmamba_is_refused(tmp_path) -> None:
    with pytest.raises(zoo.ZooError, match="layers.0.mixer is 'transmamba'"):
        export_mamba2(zoo.build("transmamba-tiny"), tmp_path / "hf")


def test_import_refuses_what_the_zoo_lacks(tmp_path) -> None:
    config = {"model_type": "mamba2", **HF_SHAPES, "time_step_limit": [0.0, 0.5], "hidden_act": "gelu"}
    with pytest.raises(zoo.ZooError, match="time_step_limit.*hidden_act|hidden_act.*time_step_limit"):
        zoo_spec(config)
    (tmp_path / "config.json").write_text(
        json.dumps({**config, "time_step_limit": [0.0, math.inf], "hidden_act": "silu"})
    )
    torch.save({}, tmp_path / "pytorch_model.bin")
    with pytest.raises(zoo.ZooError, match="safetensors only"):
        import_mamba2(tmp_path)
