"""``zoo.from_pretrained``: read a directory written by ``model.save_pretrained``.

Returns ``(model, tokenizer)``, the model in eval mode. A pair rather than a model with
a tokenizer attribute because the zoo keeps the two apart everywhere else (``zoo.load``
and ``zoo.checkpoint.load_tokenizer``, ``zoo.generate`` takes ids). Weights are read from
safetensors only; a directory holding only pickled weights is refused. config.json's
``trained_transpoints`` (the TransPoints the model was trained with) becomes
``model.trained_transpoints``, which inference runs at by default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from zoo.errors import ZooError
from zoo.models.pretrained import (
    CONFIG_EXTRA_KEYS,
    CONFIG_FILE,
    MODEL_TYPE,
    TOKENIZER_FILE,
    TRANSPOINTS_KEY,
    WEIGHTS_FILE,
)
from zoo.schedule import TransPointRecord


def read_config(directory: str | Path) -> dict[str, Any]:
    """config.json of a pretrained directory, checked to be a zoo model."""
    directory = Path(directory)
    file = directory / CONFIG_FILE
    if not file.is_file():
        raise ZooError(f"{directory} is not a pretrained model directory: {CONFIG_FILE} is missing")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZooError(f"{file} is unreadable: {exc}") from exc
    if not isinstance(config, dict) or config.get("model_type") != MODEL_TYPE:
        kind = config.get("model_type") if isinstance(config, dict) else None
        hint = " (a Hugging Face Mamba2: zoo.interop.hf_mamba2.import_mamba2)" if kind == "mamba2" else ""
        raise ZooError(f"{file}: model_type is {kind!r}, from_pretrained reads {MODEL_TYPE!r}{hint}")
    return config


def read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (OSError, SafetensorError, ValueError) as exc:
        raise ZooError(f"{file} is not a valid safetensors file: {exc}") from exc


def load_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str | Path) -> None:
    """Copy ``tensors`` (zoo names) into ``model``; tied weights may be stored once."""
    tensors = dict(tensors)
    file = source
    own = model.state_dict()
    twins: dict[int, str] = {}
    for name, tensor in own.items():
        twin = twins.setdefault(tensor.untyped_storage().data_ptr(), name)
        if twin != name and name not in tensors and twin in tensors:
            tensors[name] = tensors[twin]
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ZooError(f"{file} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    with torch.no_grad():
        for name, tensor in tensors.items():
            if own[name].shape != tensor.shape:
                raise ZooError(
                    f"{file}: {name} has shape {tuple(tensor.shape)}, the model expects {tuple(own[name].shape)}"
                )
            own[name].copy_(tensor)


def from_pretrained(
    directory: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    compile: bool = False,
) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` from a ``save_pretrained`` directory; the model in eval mode.

    ``dtype`` defaults to the stored weights' dtype; ``tokenizer`` is None when the
    directory holds none.
    """
    from zoo.builder import build
    from zoo.data.hf_tokenizer import read_hf_tokenizer

    directory = Path(directory)
    config = read_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        pickled = [p.name for p in directory.glob("*.bin")] + [p.name for p in directory.glob("*.pt")]
        found = f" (found {pickled}; zoo never loads pickled weights)" if pickled else ""
        raise ZooError(f"{directory}: {WEIGHTS_FILE} is missing{found}")
    spec = {k: v for k, v in config.items() if k not in CONFIG_EXTRA_KEYS}
    stored_dtype = config.get("torch_dtype")
    if dtype is None and isinstance(stored_dtype, str) and isinstance(getattr(torch, stored_dtype, None), torch.dtype):
        dtype = getattr(torch, stored_dtype)
    model = build(spec, device=device, dtype=dtype, compile=compile)
    load_tensors(model, read_safetensors(weights), weights)
    if config.get(TRANSPOINTS_KEY) is not None:  # absent or null: saved without a training record
        model.trained_transpoints = TransPointRecord.from_json(
            config[TRANSPOINTS_KEY], str(directory / CONFIG_FILE), model.n_layers
        )
    model.eval()
    tokenizer = None
    kind = config.get("tokenizer_kind")
    if kind is not None:
        if not (directory / TOKENIZER_FILE).is_file():
            raise ZooError(f"{directory}: config.json names tokenizer {kind!r} but {TOKENIZER_FILE} is missing")
        tokenizer = read_hf_tokenizer(directory / TOKENIZER_FILE, kind)
    return model, tokenizer
