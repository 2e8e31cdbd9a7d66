"""What a checkpoint must look like before any of it is used (see :mod:`zoo.checkpoint`).

A checkpoint directory may come from anywhere, so every file is hostile until checked:
the manifest names only plain files of the directory and lists the core files; the JSON
files have the types the loaders expect; the weights have the model's shapes and dtypes;
the optimizer state matches the parameters it belongs to. Each failure is a
``CheckpointError`` naming the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from zoo.errors import CheckpointError

# Files a checkpoint cannot do without; a manifest that leaves one out would let that
# file be replaced unverified.
CORE_FILES = ("model.safetensors", "trainer_state.json")
# A sharded checkpoint (zoo.checkpoint_shards) keeps DCP's files in two subdirectories.
SHARDED_CORE_FILES = ("model/.metadata", "trainer_state.json")
_SHARD_DIRS = ("model", "optimizer")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def check_manifest(manifest: Any, manifest_file: Path) -> dict[str, dict[str, Any]]:
    """The manifest's ``files`` table, each name a plain file name of the checkpoint directory."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise CheckpointError(f"checkpoint manifest {manifest_file} is corrupted: no 'files' table")
    step = manifest.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"checkpoint manifest {manifest_file} is corrupted: step is {step!r}")
    version = manifest.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointError(f"checkpoint manifest {manifest_file} is corrupted: version is {version!r}")
    files = manifest["files"]
    sharded = manifest.get("layout") == "sharded"
    for name, info in files.items():
        # No separators, no "..", no hidden names: a manifest cannot reach outside its directory.
        if not isinstance(name, str) or not _allowed_name(name, sharded):
            raise CheckpointError(f"checkpoint manifest {manifest_file} names a file outside the checkpoint: {name!r}")
        if not (
            isinstance(info, dict)
            and isinstance(info.get("bytes"), int)
            and not isinstance(info.get("bytes"), bool)
            and isinstance(info.get("sha256"), str)
            and _SHA256.fullmatch(info["sha256"])
        ):
            raise CheckpointError(f"checkpoint manifest {manifest_file} is corrupted: bad entry for {name!r}")
    missing = [name for name in (SHARDED_CORE_FILES if sharded else CORE_FILES) if name not in files]
    if missing:
        raise CheckpointError(f"checkpoint manifest {manifest_file} does not list {', '.join(missing)}")
    return files


def _allowed_name(name: str, sharded: bool) -> bool:
    if sharded and name.count("/") == 1:  # one level down, into model/ or optimizer/ only
        folder, base = name.split("/")
        return folder in _SHARD_DIRS and (base == ".metadata" or _allowed_name(base, False))
    return bool(_PLAIN_NAME.fullmatch(name)) and ".." not in name


def check_json_object(data: Any, file: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint file {file} is corrupted: expected a JSON object, got {type(data).__name__}")
    return data


def check_model_tensors(tensors: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor], file: Path) -> None:
    """Every stored tensor the model has must match its shape, and its kind of dtype: floats
    may change precision (a bf16 load of an fp32 checkpoint), integers and bools may not
    stand in for floats, nor the other way round."""
    for name, tensor in tensors.items():
        if name not in own:
            continue
        target = own[name]
        if tuple(tensor.shape) != tuple(target.shape):
            raise CheckpointError(
                f"{file}: {name!r} has shape {tuple(tensor.shape)}, the model expects {tuple(target.shape)}"
            )
        same_kind = (
            tensor.dtype.is_floating_point == target.dtype.is_floating_point
            and tensor.dtype.is_complex == target.dtype.is_complex
        )
        if not same_kind or (not target.dtype.is_floating_point and tensor.dtype != target.dtype):
            raise CheckpointError(
                f"{file}: {name!r} has dtype {str(tensor.dtype).removeprefix('torch.')}, the model expects "
                f"{str(target.dtype).removeprefix('torch.')}"
            )


def check_optimizer_state(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: Any, file: Path
) -> None:
    """Tensor names ``state.<param index>.<key>``, indices of this optimizer's parameters,
    per-parameter tensors (AdamW's moments) of the parameter's shape, floating point."""
    if not isinstance(meta, dict) or not isinstance(meta.get("param_groups"), list):
        raise CheckpointError(f"{file}: the optimizer metadata in trainer_state.json is corrupted")
    groups = meta["param_groups"]
    if len(groups) != len(optimizer.param_groups) or not all(isinstance(g, dict) for g in groups):
        raise CheckpointError(
            f"{file}: optimizer state has {len(groups)} parameter groups, this optimizer {len(optimizer.param_groups)}"
        )
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for name, tensor in tensors.items():
        parts = name.split(".", 2)
        if len(parts) != 3 or parts[0] != "state" or not parts[1].isdigit() or int(parts[1]) >= len(params):
            raise CheckpointError(f"{file}: unexpected optimizer tensor {name[:80]!r}")
        param = params[int(parts[1])]
        if tensor.dim() == 0:  # a step counter
            continue
        if tuple(tensor.shape) != tuple(param.shape) or not tensor.dtype.is_floating_point:
            raise CheckpointError(
                f"{file}: optimizer tensor {name!r} is {str(tensor.dtype).removeprefix('torch.')} "
                f"{tuple(tensor.shape)}, its parameter is {tuple(param.shape)}"
            )
    scalars = meta.get("scalars", {})
    if not isinstance(scalars, dict) or not all(
        isinstance(k, str) and k.isdigit() and int(k) < len(params) and isinstance(v, dict) for k, v in scalars.items()
    ):
        raise CheckpointError(f"{file}: the optimizer scalars in trainer_state.json are corrupted")
