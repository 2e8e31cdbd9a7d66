"""Checkpoint metadata: the files of a checkpoint, the JSON halves of its state (optimizer
scalars, the model spec, the training TransPoints) and ``Checkpoint``, the reader of a
verified checkpoint; ``zoo.checkpoint`` does the atomic writing, verifying and loading.

``transpoints.json`` holds the model's ``TransPointRecord`` (``zoo.schedule``): the absolute
per-layer TransPoints it was trained with and the training length. A checkpoint written
before the record existed has none; its TransPoints are rebuilt from the schedule in
``spec.json`` at the training length in ``trainer_state.json`` (``task.seq_len``), which is
what the trainer evaluated the schedule at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from zoo import checkpoint_shards as shards
from zoo.checkpoint_checks import check_json_object
from zoo.errors import CheckpointError, ZooError
from zoo.models.pretrained import record_training_transpoints
from zoo.schedule import TransPointRecord

MODEL_FILE, OPTIMIZER_FILE = "model.safetensors", "optimizer.safetensors"
SPEC_FILE, STATE_FILE, TOKENIZER_FILE = "spec.json", "trainer_state.json", "tokenizer.json"
TRANSPOINTS_FILE = "transpoints.json"


def optimizer_to_safetensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (``state.<param>.<key>``) and JSON metadata."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    meta = {"param_groups": state_dict["param_groups"], "scalars": scalars}
    return tensors, meta


def optimizer_from_safetensors(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = value
    for index, entry in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entry)
    state = dict(sorted(state.items()))
    groups = []
    for group in meta["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}


def spec_to_json(model: torch.nn.Module) -> dict[str, Any] | None:
    spec = getattr(model, "spec", None)
    if spec is None:
        return None
    if hasattr(spec, "model_dump"):
        return spec.model_dump(mode="json")
    return dict(spec)


def transpoints_to_json(model: torch.nn.Module) -> dict[str, Any] | None:
    """The model's training-TransPoint record as JSON (None when it has none)."""
    record = getattr(model, "trained_transpoints", None)
    return record.to_json() if record is not None else None


def attach_transpoints(
    model: torch.nn.Module, record: Any | None, trainer_state: Mapping[str, Any], source: str
) -> TransPointRecord | None:
    """Give a loaded ``model`` its training TransPoints: the stored ``record`` (parsed JSON),
    else, for an older checkpoint, its schedule at the trainer state's ``task.seq_len``."""
    if record is not None:
        try:
            model.trained_transpoints = TransPointRecord.from_json(record, source, getattr(model, "n_layers", None))
        except ZooError as exc:  # a bad file in a checkpoint is a CheckpointError, like the others
            raise CheckpointError(str(exc)) from None
        return model.trained_transpoints
    task = trainer_state.get("task")
    seq_len = task.get("seq_len") if isinstance(task, dict) else None
    if type(seq_len) is int and seq_len >= 1:
        return record_training_transpoints(model, seq_len)
    return None


@dataclass
class Checkpoint:
    """A verified checkpoint on disk; tensors are read on demand."""

    path: Path
    manifest: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.manifest["step"])

    @property
    def sharded(self) -> bool:
        """Written by several processes (see zoo.checkpoint_shards)."""
        return shards.is_sharded(self.manifest)

    def has(self, name: str) -> bool:
        return name in self.manifest["files"]

    def read_json(self, name: str) -> Any:
        file = self.path / name
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise CheckpointError(f"checkpoint file {file} is unreadable: {exc}") from exc

    def read_tensors(self, name: str, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        file = self.path / name
        try:
            return load_file(str(file), device=str(device))
        except (OSError, SafetensorError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"checkpoint file {file} is not a valid safetensors file: {exc}") from exc

    @property
    def spec(self) -> dict[str, Any] | None:
        return check_json_object(self.read_json(SPEC_FILE), self.path / SPEC_FILE) if self.has(SPEC_FILE) else None

    @property
    def trainer_state(self) -> dict[str, Any]:
        return check_json_object(self.read_json(STATE_FILE), self.path / STATE_FILE)

    @property
    def transpoints(self) -> dict[str, Any] | None:
        """The stored training-TransPoint record (JSON), None in a checkpoint without one."""
        if not self.has(TRANSPOINTS_FILE):
            return None
        return check_json_object(self.read_json(TRANSPOINTS_FILE), self.path / TRANSPOINTS_FILE)

    @property
    def tokenizer(self) -> dict[str, Any] | None:
        if not self.has(TOKENIZER_FILE):
            return None
        return check_json_object(self.read_json(TOKENIZER_FILE), self.path / TOKENIZER_FILE)
