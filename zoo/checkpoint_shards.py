"""Sharded checkpoints: the layout a multi-process run writes, read back without a process group.

A run of several processes saves through ``torch.distributed.checkpoint`` (DCP): every
rank writes its own shards, nobody gathers the whole model::

    RUN/checkpoints/step-00000100/model/.metadata           DCP index of the model's tensors
                                  model/__<rank>_<i>.distcp  each rank's shards
                                  optimizer/.metadata, optimizer/__<rank>_<i>.distcp
                                  {spec,trainer_state,tokenizer}.json
                                  MANIFEST.json   (layout "sharded", version 2, sha256 of every file)

It is published like a single-file checkpoint (staging directory, then one rename), so
``checkpoints/`` holds only complete ones. This module reads the model's part into a plain
module on one process (``zoo.load``, ``zoo eval``, ``zoo export``); DCP reshards on load,
so any number of processes reads what any number wrote.

DCP's ``.metadata`` is a pickle. A checkpoint may come from anywhere, so it is unpickled
with an allow-list (DCP's own metadata classes, ``torch.Size``, dtypes, paths): anything
else is a ``CheckpointError``, never code run.
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from zoo.errors import CheckpointError

LAYOUT = "sharded"
VERSION = 2
MODEL_DIR, OPTIMIZER_DIR = "model", "optimizer"
DCP_METADATA = ".metadata"
CORE_FILES = (f"{MODEL_DIR}/{DCP_METADATA}", "trainer_state.json")


def is_sharded(manifest: Mapping[str, Any]) -> bool:
    return manifest.get("layout") == LAYOUT


def model_bytes(manifest: Mapping[str, Any]) -> int:
    """Bytes of the model's shard files (what a one-process load reads)."""
    return sum(info["bytes"] for name, info in manifest["files"].items() if name.startswith(f"{MODEL_DIR}/"))


_ALLOWED = {
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "pathlib": {"Path", "PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
    "builtins": {"set", "frozenset", "slice"},
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "torch.distributed.checkpoint.metadata" and not name.startswith("__"):
            return super().find_class(module, name)
        if module == "torch" and (name == "Size" or isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in DCP metadata")


def _reader(directory: Path) -> Any:
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class Reader(FileSystemReader):
        """DCP's file reader, with the metadata unpickled through the allow-list."""

        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            file = directory / DCP_METADATA
            try:
                metadata = _MetadataUnpickler(io.BytesIO(file.read_bytes())).load()
            except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError) as exc:
                raise CheckpointError(f"sharded checkpoint index {file} is unreadable or unsafe: {exc}") from exc
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return Reader(str(directory))


def read_index(directory: Path) -> dict[str, Any]:
    """``{key: DCP storage metadata}`` of a DCP directory (tensors carry ``.size``)."""
    metadata = _reader(directory).read_metadata()
    return dict(metadata.state_dict_metadata)


def load_dcp(state: dict[str, Any], directory: Path, *, process_group: bool) -> None:
    """Fill ``state`` (tensors or DTensors, loaded in place) from the DCP directory; any failure
    is a CheckpointError naming it."""
    import torch.distributed.checkpoint as dcp

    try:
        with warnings.catch_warnings():
            # DCP warns on every load without a process group, even when asked for one
            warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
            dcp.load(state, storage_reader=_reader(directory), no_dist=not process_group)
    except CheckpointError:
        raise
    except Exception as exc:  # DCP wraps its per-rank failures in its own exception types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CheckpointError(f"sharded checkpoint {directory} does not load: {first}") from exc


def load_model_shards(model: torch.nn.Module, directory: Path, *, strict: bool = True) -> None:
    """Load the model part of a sharded checkpoint into a plain (unsharded) module, on one process."""
    index = read_index(directory)
    own = model.state_dict()
    missing = sorted(set(own) - set(index))
    unexpected = sorted(set(index) - set(own))
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{directory} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for name, target in own.items():
        size = getattr(index.get(name), "size", None)
        if size is not None and tuple(size) != tuple(target.shape):
            raise CheckpointError(
                f"{directory}: {name!r} has shape {tuple(size)}, the model expects {tuple(target.shape)}"
            )
    with torch.no_grad():
        load_dcp({name: tensor for name, tensor in own.items() if name in index}, directory, process_group=False)


__all__ = [
    "CORE_FILES",
    "DCP_METADATA",
    "LAYOUT",
    "MODEL_DIR",
    "OPTIMIZER_DIR",
    "VERSION",
    "is_sharded",
    "load_dcp",
    "load_model_shards",
    "model_bytes",
    "read_index",
]
