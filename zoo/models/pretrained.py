"""``save_pretrained``: a model as a Hugging Face-style directory (read back by ``zoo.from_pretrained``).

::

    DIR/config.json            the ModelSpec's fields, plus model_type "zoo", architectures,
                               zoo_version, torch_dtype, tokenizer_kind and
                               trained_transpoints (the TransPoints the model was trained
                               with, or null: ``zoo.schedule.TransPointRecord``)
    DIR/model.safetensors      the weights; tied weights stored once (lm_head.weight is
                               the embedding's, as Hugging Face stores tied weights)
    DIR/tokenizer.json         a Hugging Face ``tokenizers`` file (zoo.data.hf_tokenizer)
    DIR/tokenizer_config.json  the special tokens, for ``transformers.AutoTokenizer``

The directory is written complete in a staging directory beside it and renamed into
place, so a reader never sees a half-written model. An existing non-empty directory is
replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from zoo.errors import ZooError
from zoo.schedule import NoSchedule, TransPointRecord, clamp, record_schedule

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
TOKENIZER_FILE, TOKENIZER_CONFIG_FILE = "tokenizer.json", "tokenizer_config.json"
MODEL_TYPE = "zoo"
# Keys config.json adds to the spec's own fields (from_pretrained removes them again).
TRANSPOINTS_KEY = "trained_transpoints"
CONFIG_EXTRA_KEYS = ("model_type", "architectures", "zoo_version", "torch_dtype", "tokenizer_kind", TRANSPOINTS_KEY)


class PretrainedMixin:
    """Adds ``save_pretrained`` and the training-TransPoint record to a model that has a
    ``spec`` (a ModelSpec), a ``schedule``, ``n_layers`` and ``transpoints_for(seq_len)``.

    ``trained_transpoints`` (a ``TransPointRecord`` or None) holds the absolute per-layer
    TransPoints the model was trained with; the trainer records it, checkpoints and
    ``save_pretrained`` keep it, and the model runs at those TransPoints by default
    (``default_transpoints``). A model without one (fresh from ``zoo.build``) evaluates its
    schedule at each sequence's own length.
    """

    trained_transpoints: TransPointRecord | None = None
    # set by use_transpoints: absolute per-layer TransPoints that replace the default
    transpoints_override: tuple[int, ...] | None = None

    def record_training_transpoints(self, seq_len: int) -> TransPointRecord | None:
        """Record that the model trains at ``seq_len`` tokens under its schedule (kept as is
        when already recorded, so the object a compiled forward guards on stays the same).
        Returns the record; None for a model whose layers use no TransPoint."""
        return record_training_transpoints(self, seq_len)

    def default_transpoints(self, seq_len: int) -> list[int]:
        """Per-layer TransPoints for a sequence (or cache) of ``seq_len`` tokens when none are
        given: ``use_transpoints``'s list, else the training record (absolute positions:
        ``TransPointRecord.at``), else the schedule evaluated at ``seq_len``."""
        if self.transpoints_override is not None:
            return clamp(list(self.transpoints_override), seq_len)
        if self.trained_transpoints is not None:
            return self.trained_transpoints.at(seq_len)
        return self.transpoints_for(seq_len)

    def use_transpoints(self, transpoints: Sequence[int] | None) -> None:
        """Run at these absolute per-layer TransPoints by default (None: back to the default)."""
        if transpoints is not None:
            transpoints = tuple(int(p) for p in transpoints)
            if len(transpoints) != self.n_layers or min(transpoints, default=0) < 0:
                raise ZooError(
                    f"transpoints: give {self.n_layers} values >= 0 (one per layer), got {list(transpoints)}"
                )
        self.transpoints_override = transpoints

    def save_pretrained(self, directory: str | Path, *, tokenizer: Any | None = None, overwrite: bool = False) -> Path:
        """Write config.json, model.safetensors and the tokenizer files to ``directory``.

        ``tokenizer`` defaults to the byte tokenizer when the vocabulary holds it (>= 259
        ids), else no tokenizer is written. Returns the directory.
        """
        return save_pretrained(self, directory, tokenizer=tokenizer, overwrite=overwrite)


def save_pretrained(
    model: torch.nn.Module, directory: str | Path, *, tokenizer: Any | None = None, overwrite: bool = False
) -> Path:
    from zoo.data.hf_tokenizer import hf_tokenizer_config, hf_tokenizer_text
    from zoo.data.tokenizer import ByteTokenizer
    from zoo.version import __version__

    directory = Path(directory)
    check_writable(directory, overwrite, "save_pretrained")
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ZooError("save_pretrained needs a model built by zoo.build (it has no .spec)")
    vocab_size = spec.vocab_size
    if tokenizer is None and vocab_size >= ByteTokenizer().vocab_size:
        tokenizer = ByteTokenizer()
    if tokenizer is not None and tokenizer.vocab_size > vocab_size:
        raise ZooError(
            f"save_pretrained: the tokenizer has {tokenizer.vocab_size} ids, the model's "
            f"vocab_size is {vocab_size}; pass the tokenizer the model was trained with"
        )
    tensors = model_tensors(model)
    dtypes = {t.dtype for t in tensors.values() if t.is_floating_point()}
    config = {
        **spec.model_dump(mode="json"),
        "model_type": MODEL_TYPE,
        "architectures": [type(model).__name__],
        "zoo_version": __version__,
        "torch_dtype": str(dtypes.pop()).removeprefix("torch.") if len(dtypes) == 1 else None,
        "tokenizer_kind": tokenizer.kind if tokenizer is not None else None,
        TRANSPOINTS_KEY: record.to_json() if (record := getattr(model, "trained_transpoints", None)) else None,
    }

    def write(staging: Path) -> None:
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        write_json(staging / CONFIG_FILE, config)
        if tokenizer is not None:
            (staging / TOKENIZER_FILE).write_text(hf_tokenizer_text(tokenizer), encoding="utf-8")
            write_json(staging / TOKENIZER_CONFIG_FILE, hf_tokenizer_config(tokenizer))

    write_directory(directory, write, overwrite=True)
    return directory


def uses_transpoints(model: torch.nn.Module) -> bool:
    """Whether any layer of ``model`` has a TransPoint (a transmamba mixer)."""
    return any(getattr(block, "uses_transpoint", False) for block in getattr(model, "blocks", ()))


def record_training_transpoints(model: torch.nn.Module, seq_len: int) -> TransPointRecord | None:
    """Set ``model.trained_transpoints`` to its schedule at ``seq_len`` (see PretrainedMixin);
    a no-op returning None for a model without a schedule or TransPoint layers."""
    schedule = getattr(model, "schedule", None)
    if schedule is None or isinstance(schedule, NoSchedule) or not uses_transpoints(model):
        return None
    record = record_schedule(schedule, model.n_layers, int(seq_len))
    if getattr(model, "trained_transpoints", None) != record or model.trained_transpoints.params != record.params:
        model.trained_transpoints = record
    return model.trained_transpoints


def check_writable(directory: Path, overwrite: bool, what: str) -> None:
    """Refuse an existing non-empty ``directory`` unless ``overwrite`` (no silent replace)."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())) and not overwrite:
        raise ZooError(f"{what}: {directory} exists and is not empty; pass overwrite=True to replace it")


def write_directory(directory: Path, write: Callable[[Path], None], *, overwrite: bool = False) -> None:
    """Run ``write(staging)`` on an empty staging directory beside ``directory``, fsync its
    files, then rename it to ``directory`` (replacing it only when ``overwrite``)."""
    check_writable(directory, overwrite, "write")
    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".{directory.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        write(staging)
        for path in staging.iterdir():
            fsync_path(path)
        fsync_path(staging)
        _move_into_place(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, directory: Path) -> None:
    if not directory.exists():
        os.replace(staging, directory)
    else:
        # Replace: move the old directory aside first (os.replace cannot replace a non-empty dir).
        trash = directory.parent / f".{directory.name}.old-{os.getpid()}"
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(directory, trash)
        os.replace(staging, directory)
        shutil.rmtree(trash, ignore_errors=True)
    fsync_path(directory.parent)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a no-op where a directory cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict with tied tensors stored once (safetensors refuses shared storage)."""
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            continue
        seen[key] = name
        tensors[name] = tensor.detach().to("cpu").contiguous()
    return tensors
