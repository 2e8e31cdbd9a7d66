"""Zoo Mamba2 models <-> Hugging Face transformers' ``Mamba2ForCausalLM``.

A zoo model is expressible as HF Mamba2 when every layer is a ``mamba2`` mixer with no
MLP (``mlp: {kind: none}``), all layers share the shape options, the norm is RMSNorm and
the gated norm's eps equals the block norms' (HF has one ``layer_norm_epsilon``). Both
sides split ``in_proj`` as (z, x, B, C, dt), run the causal conv over (x, B, C), and
normalise with a grouped gated RMSNorm of ``y * silu(z)``, so the weights map one to one
(docs/interop.md has the table). Export and import need no ``transformers``; only
running the result in HF does. Import refuses HF options the zoo mixer lacks (a
``time_step_limit`` clamp, an activation other than SiLU).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from zoo.errors import ZooError
from zoo.models.pretrained import CONFIG_FILE, WEIGHTS_FILE, check_writable, write_directory, write_json

# (zoo name, HF name) patterns; {i} is the layer index.
_LAYER_NAMES = [
    ("blocks.{i}.mixer_norm.weight", "backbone.layers.{i}.norm.weight"),
    *[
        (f"blocks.{{i}}.mixer.ssd.{name}", f"backbone.layers.{{i}}.mixer.{name}")
        for name in (
            "in_proj.weight",
            "in_proj.bias",
            "conv1d.weight",
            "conv1d.bias",
            "dt_bias",
            "A_log",
            "D",
            "norm.weight",
            "out_proj.weight",
            "out_proj.bias",
        )
    ],
]
_MODEL_NAMES = [
    ("embedding.weight", "backbone.embeddings.weight"),
    ("final_norm.weight", "backbone.norm_f.weight"),
    ("lm_head.weight", "lm_head.weight"),
]
_SHAPE_OPTIONS = ("d_state", "d_conv", "expand", "headdim", "n_groups", "bias", "conv_bias", "norm_eps")


def _rename(name: str, pairs: list[tuple[str, str]], to_hf: bool) -> str | None:
    for zoo_name, hf_name in pairs:
        source, target = (zoo_name, hf_name) if to_hf else (hf_name, zoo_name)
        pattern = "^" + re.escape(source).replace(re.escape("{i}"), r"(?P<i>\d+)") + "$"
        match = re.match(pattern, name)
        if match:
            return target.format(**match.groupdict())
    return None


def zoo_to_hf_name(name: str) -> str:
    hf = _rename(name, _MODEL_NAMES + _LAYER_NAMES, to_hf=True)
    if hf is None:
        raise ZooError(f"zoo weight {name!r} has no place in HF Mamba2")
    return hf


def hf_to_zoo_name(name: str) -> str:
    zoo_name = _rename(name, _MODEL_NAMES + _LAYER_NAMES, to_hf=False)
    if zoo_name is None:
        raise ZooError(f"HF Mamba2 weight {name!r} has no place in a zoo Mamba2 model")
    return zoo_name


def unexpressible(spec: Any) -> list[str]:
    """Why a zoo ModelSpec cannot be written as HF Mamba2 (empty when it can)."""
    from zoo.layers.mixers.mamba2 import Mamba2Params

    problems = []
    if spec.norm.kind != "rmsnorm":
        problems.append(f"norm.kind is {spec.norm.kind!r}; HF Mamba2 uses RMSNorm")
    first = None
    for index, block in enumerate(spec.layers):
        if block.mixer.name != "mamba2":
            problems.append(f"layers.{index}.mixer is {block.mixer.name!r}; HF Mamba2 has only mamba2 mixers")
            continue
        if block.mlp.kind != "none":
            problems.append(
                f"layers.{index}.mlp is {block.mlp.kind!r}; HF Mamba2 blocks have no MLP (mlp: {{kind: none}})"
            )
        params = Mamba2Params.model_validate(block.mixer.params)
        if first is None:
            first = params
            if params.norm_eps != spec.norm.eps:
                problems.append(
                    f"layers.{index}.mixer.params.norm_eps ({params.norm_eps}) differs from norm.eps "
                    f"({spec.norm.eps}); HF Mamba2 has one layer_norm_epsilon"
                )
        for option in _SHAPE_OPTIONS:
            if getattr(params, option) != getattr(first, option):
                problems.append(
                    f"layers.{index}.mixer.params.{option} differs from layer 0's; HF Mamba2 layers share one config"
                )
    return problems


def hf_config(spec: Any, tokenizer: Any | None = None) -> dict[str, Any]:
    """The ``Mamba2Config`` fields of a zoo Mamba2 spec (ZooError naming what HF cannot express)."""
    from zoo.layers.mixers.mamba2 import Mamba2Params

    problems = unexpressible(spec)
    if problems:
        raise ZooError("this model cannot be written as HF Mamba2: " + "; ".join(problems))
    params = Mamba2Params.model_validate(spec.layers[0].mixer.params)
    ids = {}
    if tokenizer is not None:
        ids = {"pad_token_id": tokenizer.pad_id, "bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id}
    return {
        "model_type": "mamba2",
        "architectures": ["Mamba2ForCausalLM"],
        "vocab_size": spec.vocab_size,
        "hidden_size": spec.d_model,
        "num_hidden_layers": spec.n_layers,
        "state_size": params.d_state,
        "expand": params.expand,
        "head_dim": params.headdim,
        "num_heads": params.expand * spec.d_model // params.headdim,
        "n_groups": params.n_groups,
        "conv_kernel": params.d_conv,
        "use_bias": params.bias,
        "use_conv_bias": params.conv_bias,
        "layer_norm_epsilon": spec.norm.eps,
        "hidden_act": "silu",
        "time_step_min": params.dt_min,
        "time_step_max": params.dt_max,
        "time_step_floor": params.dt_init_floor,
        # time_step_limit is left at HF's default, (0, inf): no clamp, as in the zoo
        # the zoo adds residuals in the model's dtype; HF's fp32 residual would differ in bf16
        "residual_in_fp32": False,
        "tie_word_embeddings": spec.tie_embeddings,
        "initializer_range": spec.init_std,
        "pad_token_id": None,
        "bos_token_id": None,
        "eos_token_id": None,
        **ids,
    }


def hf_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under HF Mamba2 names (tied lm_head left out, as HF stores it)."""
    from zoo.models.pretrained import model_tensors

    return {zoo_to_hf_name(name): tensor for name, tensor in model_tensors(model).items()}


def export_mamba2(
    model: torch.nn.Module, directory: str | Path, *, tokenizer: Any | None = None, overwrite: bool = False
) -> Path:
    """Write ``model`` as a HF Mamba2 directory (config.json, model.safetensors[, tokenizer files]).

    ``transformers.Mamba2ForCausalLM.from_pretrained(directory)`` loads it.
    """
    from zoo.data.hf_tokenizer import hf_tokenizer_config, hf_tokenizer_text

    directory = Path(directory)
    check_writable(directory, overwrite, "export_mamba2")
    config = hf_config(model.spec, tokenizer)
    if tokenizer is not None and tokenizer.vocab_size > model.spec.vocab_size:
        raise ZooError(
            f"export_mamba2: the tokenizer has {tokenizer.vocab_size} ids, the model's vocab_size is "
            f"{model.spec.vocab_size}; pass the tokenizer the model was trained with"
        )
    tensors = hf_state_dict(model)

    def write(staging: Path) -> None:
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        write_json(staging / CONFIG_FILE, config)
        if tokenizer is not None:
            (staging / "tokenizer.json").write_text(hf_tokenizer_text(tokenizer), encoding="utf-8")
            write_json(staging / "tokenizer_config.json", hf_tokenizer_config(tokenizer))

    write_directory(directory, write, overwrite=True)
    return directory


def zoo_spec(config: dict[str, Any]) -> dict[str, Any]:
    """A zoo ModelSpec dict for a HF ``Mamba2Config`` (as a dict); ZooError on options the zoo lacks."""
    get = config.get
    problems = []
    if get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act is {get('hidden_act')!r}; the zoo's mamba2 uses silu")
    limit = [_number(v) for v in get("time_step_limit") or (0.0, math.inf)]
    if limit[0] != 0.0 or limit[1] != math.inf:
        problems.append(f"time_step_limit is {limit}; the zoo's mamba2 does not clamp dt")
    hidden, expand, heads, head_dim = get("hidden_size"), get("expand", 2), get("num_heads"), get("head_dim")
    if hidden is None or heads is None or head_dim is None or expand * hidden != heads * head_dim:
        problems.append(
            f"expand * hidden_size ({expand} * {hidden}) must equal num_heads * head_dim ({heads} * {head_dim})"
        )
    if problems:
        raise ZooError("this HF Mamba2 cannot be expressed as a zoo model: " + "; ".join(problems))
    eps = float(get("layer_norm_epsilon", 1e-5))
    params = {
        "d_state": get("state_size"),
        "d_conv": get("conv_kernel", 4),
        "expand": expand,
        "headdim": head_dim,
        "n_groups": get("n_groups"),
        "bias": bool(get("use_bias", False)),
        "conv_bias": bool(get("use_conv_bias", True)),
        "norm_eps": eps,
    }
    for zoo_key, hf_key in (
        ("dt_min", "time_step_min"),
        ("dt_max", "time_step_max"),
        ("dt_init_floor", "time_step_floor"),
    ):
        if get(hf_key) is not None:
            params[zoo_key] = float(get(hf_key))
    block = {"mixer": {"name": "mamba2", "params": params}, "mlp": {"kind": "none"}}
    return {
        "name": get("_name_or_path") or None,
        "vocab_size": get("vocab_size"),
        "d_model": hidden,
        "layers": [block] * int(get("num_hidden_layers")),
        "norm": {"kind": "rmsnorm", "eps": eps},
        "tie_embeddings": bool(get("tie_word_embeddings", False)),
    }


def _number(value: Any) -> float:
    # transformers writes non-finite floats into config.json as {"__float__": "Infinity"}
    if isinstance(value, dict) and "__float__" in value:
        value = value["__float__"]
    return float(value)


def _read_hf_dir(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from zoo.hf import read_safetensors

    config_file = directory / CONFIG_FILE
    if not config_file.is_file():
        raise ZooError(f"{directory} is not a HF model directory: {CONFIG_FILE} is missing")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("model_type") != "mamba2":
        raise ZooError(f"{config_file}: model_type is {config.get('model_type')!r}; import_mamba2 reads 'mamba2'")
    index = directory / f"{WEIGHTS_FILE}.index.json"
    if (directory / WEIGHTS_FILE).is_file():
        files = [directory / WEIGHTS_FILE]
    elif index.is_file():
        files = [directory / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    else:
        raise ZooError(f"{directory}: no {WEIGHTS_FILE} (the zoo reads safetensors only, never pickled .bin)")
    tensors: dict[str, torch.Tensor] = {}
    for file in files:
        tensors.update(read_safetensors(file))
    return config, tensors


def import_mamba2(
    source: str | Path | torch.nn.Module, *, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.nn.Module:
    """A zoo model (eval mode) from a HF Mamba2 directory or a ``Mamba2ForCausalLM`` instance."""
    from zoo.builder import build
    from zoo.hf import load_tensors

    if isinstance(source, torch.nn.Module):
        config, tensors = source.config.to_dict(), dict(source.state_dict())
        label: str | Path = type(source).__name__
    else:
        config, tensors = _read_hf_dir(Path(source))
        label = source
    spec = zoo_spec(config)
    model = build(spec, device=device, dtype=dtype, compile=False)
    zoo_tensors = {hf_to_zoo_name(name): tensor for name, tensor in tensors.items()}
    if spec["tie_embeddings"]:
        zoo_tensors.pop("lm_head.weight", None)  # HF's in-memory state dict lists the tied alias too
    load_tensors(model, zoo_tensors, label)
    return model.eval()
