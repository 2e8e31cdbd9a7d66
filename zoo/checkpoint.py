"""Checkpoint IO: safetensors for tensors, JSON for everything else, never pickle.

A run directory looks like::

    RUN/checkpoints/step-00000100/{model,optimizer}.safetensors
                                  {spec,trainer_state,tokenizer,transpoints}.json
                                  MANIFEST.json      (size + sha256 of every other file)
    RUN/.staging/                                    (scratch space, never a checkpoint)

A checkpoint is written complete into ``RUN/.staging`` (files fsynced, ``MANIFEST.json``
last), then moved into ``checkpoints/`` with one ``os.replace``, so ``checkpoints/`` only
ever holds complete checkpoints, whenever the process dies. Pruning moves a checkpoint
back to staging before deleting it, for the same reason. Loading checks the manifest
first: a truncated or altered file is reported by name instead of failing inside a
decoder. The JSON metadata (optimizer scalars, spec, training TransPoints) is
``zoo.checkpoint_meta``'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from zoo import checkpoint_shards as shards
from zoo.checkpoint_checks import check_manifest, check_model_tensors, check_optimizer_state
from zoo.checkpoint_meta import (  # noqa: F401  (re-exported: part of this module's API)
    MODEL_FILE,
    OPTIMIZER_FILE,
    SPEC_FILE,
    STATE_FILE,
    TOKENIZER_FILE,
    TRANSPOINTS_FILE,
    Checkpoint,
    attach_transpoints,
    optimizer_from_safetensors,
    optimizer_to_safetensors,
    spec_to_json,
    transpoints_to_json,
)
from zoo.errors import CheckpointError, ZooError
from zoo.models.pretrained import fsync_path, model_tensors, uses_transpoints

FORMAT = "zoo-checkpoint"
VERSION = 1
MANIFEST = "MANIFEST.json"
CHECKPOINTS, STAGING = "checkpoints", ".staging"
_STEP_DIR = re.compile(r"^step-(\d+)$")


# ---------------------------------------------------------------- atomic file helpers


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same directory and a rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")


# ---------------------------------------------------------------- saving


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: str | Path) -> int:
    """The step a checkpoint directory's name records (``step-00000040`` -> 40)."""
    match = _STEP_DIR.match(Path(path).name)
    if match is None:
        raise CheckpointError(f"{path} is not named like a checkpoint (step-NNNNNNNN)")
    return int(match.group(1))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def clear_staging(run_dir: str | Path) -> None:
    """Delete leftovers of a checkpoint write that was interrupted (they are never loaded)."""
    shutil.rmtree(Path(run_dir) / STAGING, ignore_errors=True)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    trainer_state: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    tokenizer: dict[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write checkpoint ``step`` atomically under ``run_dir/checkpoints``; keep the last ``keep_last``."""
    run_dir = Path(run_dir)
    tmp = run_dir / STAGING / f"{checkpoint_name(step)}.{os.getpid()}"
    try:
        return _save_checkpoint(
            run_dir,
            tmp,
            step,
            model=model,
            optimizer=optimizer,
            trainer_state=trainer_state,
            spec=spec,
            tokenizer=tokenizer,
            keep_last=keep_last,
        )
    except (OSError, SafetensorError) as exc:
        # Disk full, quota, permissions: the staging copy goes, checkpoints/ is untouched.
        shutil.rmtree(tmp, ignore_errors=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CheckpointError(
            f"cannot write checkpoint step {step} into {run_dir}: {reason}; the previous checkpoints are intact"
        ) from exc


def _save_checkpoint(
    run_dir: Path,
    tmp: Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    trainer_state: dict[str, Any] | None,
    spec: dict[str, Any] | None,
    tokenizer: dict[str, Any] | None,
    keep_last: int | None,
) -> Path:
    (run_dir / STAGING).mkdir(parents=True, exist_ok=True)
    (run_dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    save_file(model_tensors(model), str(tmp / MODEL_FILE), metadata={"format": FORMAT})
    state = dict(trainer_state or {})
    state["step"] = step
    if optimizer is not None:
        tensors, meta = optimizer_to_safetensors(optimizer)
        save_file(tensors, str(tmp / OPTIMIZER_FILE), metadata={"format": FORMAT})
        state["optimizer"] = meta
    spec = spec if spec is not None else spec_to_json(model)
    if spec is not None:
        _write_json(tmp / SPEC_FILE, spec)
    if tokenizer is not None:
        _write_json(tmp / TOKENIZER_FILE, tokenizer)
    if (transpoints := transpoints_to_json(model)) is not None:
        _write_json(tmp / TRANSPOINTS_FILE, transpoints)
    _write_json(tmp / STATE_FILE, state)
    return publish_checkpoint(run_dir, tmp, step, keep_last=keep_last)


def publish_checkpoint(
    run_dir: Path,
    tmp: Path,
    step: int,
    *,
    keep_last: int | None,
    hashed: dict[str, dict[str, Any]] | None = None,
    manifest: dict[str, Any] | None = None,
) -> Path:
    """Hash every file of the staged checkpoint ``tmp`` (but those in ``hashed``, hashed by
    their writers already), write MANIFEST.json last, rename it into ``checkpoints/``, prune."""
    staging, final_root = run_dir / STAGING, run_dir / CHECKPOINTS
    files = dict(hashed or {})
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        name = path.relative_to(tmp).as_posix()
        if name not in files:
            _fsync_file(path)
            files[name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    for folder in sorted({p.parent for p in tmp.rglob("*") if p.is_file()} - {tmp}):
        fsync_path(folder)
    header = {"format": FORMAT, "version": VERSION, "step": step, **(manifest or {})}
    _write_json(tmp / MANIFEST, {**header, "files": dict(sorted(files.items()))})
    _fsync_file(tmp / MANIFEST)
    fsync_path(tmp)

    final = final_root / checkpoint_name(step)
    if final.exists():  # re-saving a step (e.g. after a resume): move the old one out first
        _discard(final, staging)
    os.replace(tmp, final)
    fsync_path(final_root)
    if keep_last is not None and keep_last > 0:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            _discard(old, staging)
    return final


def _discard(path: Path, staging: Path) -> None:
    trash = staging / f"trash-{path.name}.{os.getpid()}"
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


# ---------------------------------------------------------------- loading


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (its latest checkpoint)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint path {path} does not exist")
    if (path / MANIFEST).exists() or _STEP_DIR.match(path.name):
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"{path} is neither a checkpoint nor a run directory with checkpoints/step-*")
    return latest


def open_checkpoint(path: str | Path, *, verify: bool = True) -> Checkpoint:
    """Open and verify (sizes, sha256) a checkpoint; errors name the offending file."""
    path = resolve_checkpoint(path)
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise CheckpointError(f"incomplete checkpoint {path}: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint manifest {manifest_file} is corrupted: {exc}") from exc
    files = check_manifest(manifest, manifest_file)
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{manifest_file} is not a {FORMAT} manifest")
    if manifest.get("version", 0) > shards.VERSION:  # an int: check_manifest saw to it
        raise CheckpointError(
            f"{path} has checkpoint format version {manifest['version']}; this zoo reads <= {shards.VERSION}"
        )
    for name, info in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint file {file} is missing")
        size = file.stat().st_size
        if size != info["bytes"]:
            raise CheckpointError(
                f"checkpoint file {file} is truncated or altered: {size} bytes, manifest says {info['bytes']}"
            )
        if verify and _sha256(file) != info["sha256"]:
            raise CheckpointError(f"checkpoint file {file} is corrupted: sha256 does not match the manifest")
    return Checkpoint(path, manifest)


def load_model_state(model: torch.nn.Module, checkpoint: Checkpoint, *, strict: bool = True) -> None:
    if checkpoint.sharded:
        shards.load_model_shards(model, checkpoint.path / shards.MODEL_DIR, strict=strict)
        return
    tensors = checkpoint.read_tensors(MODEL_FILE)
    own = model.state_dict()
    # Tied parameters were stored once; fill the aliases from their twin.
    aliases = {}
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for name, tensor in own.items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
    for alias, twin in aliases.items():
        if alias not in tensors and twin in tensors:
            tensors[alias] = tensors[twin]
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{checkpoint.path / MODEL_FILE} does not match the model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    check_model_tensors(tensors, own, checkpoint.path / MODEL_FILE)
    with torch.no_grad():
        for name, tensor in tensors.items():
            if name in own:
                if own[name].shape != tensor.shape:
                    raise CheckpointError(
                        f"{checkpoint.path / MODEL_FILE}: {name} has shape {tuple(tensor.shape)}, "
                        f"the model expects {tuple(own[name].shape)}"
                    )
                own[name].copy_(tensor)


def load_optimizer_state(optimizer: torch.optim.Optimizer, checkpoint: Checkpoint) -> None:
    meta = checkpoint.trainer_state.get("optimizer")
    if meta is None or not checkpoint.has(OPTIMIZER_FILE):
        raise CheckpointError(f"checkpoint {checkpoint.path} holds no optimizer state")
    tensors = checkpoint.read_tensors(OPTIMIZER_FILE)
    check_optimizer_state(optimizer, tensors, meta, checkpoint.path / OPTIMIZER_FILE)
    try:
        optimizer.load_state_dict(optimizer_from_safetensors(tensors, meta))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{checkpoint.path / OPTIMIZER_FILE}: the optimizer state does not load: {exc}") from exc


def load(
    path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    compile: bool | None = False,
    backends: dict[str, str] | None = None,
    allow_large: bool = False,
) -> torch.nn.Module:
    """Build the model a checkpoint (or a run directory's latest checkpoint) describes, with its weights.

    ``backends`` ({slot: name}) runs it on other backends than it was trained on, e.g.
    ``{"ssm": "chunked", "converter": "chunked"}`` for a checkpoint trained with the Triton
    kernels, on a CPU (the weights do not depend on the backend). The model comes back in
    eval mode (``.train()`` to fine-tune it; a trainer's resume loads into its own model).
    ``allow_large``: load even when the weights exceed the free memory (see ``zoo.memory``).
    """
    from zoo.builder import build
    from zoo.overrides import spec_with_backends

    checkpoint = open_checkpoint(path)
    spec = checkpoint.spec
    if spec is None:
        raise CheckpointError(f"checkpoint {checkpoint.path} has no {SPEC_FILE}; cannot rebuild the model")
    if backends:
        spec, _ = spec_with_backends(spec, backends, strict=True, label=f"checkpoint {checkpoint.path}")
    if not allow_large:  # the weights file is read into host memory whole
        from zoo.memory import check_fits

        if checkpoint.sharded:
            what, size = checkpoint.path / shards.MODEL_DIR, shards.model_bytes(checkpoint.manifest)
        else:
            what, size = checkpoint.path / MODEL_FILE, checkpoint.manifest["files"][MODEL_FILE]["bytes"]
        check_fits(f"reading {what}", size, "cpu")
    model = build(spec, device=device, dtype=dtype, compile=False, allow_large=allow_large)
    load_model_state(model, checkpoint)
    attach_transpoints(model, checkpoint.transpoints, checkpoint.trainer_state, str(checkpoint.path / TRANSPOINTS_FILE))
    model.eval()
    if compile:
        from zoo.compile import compile_in_place, spec_options

        compile_in_place(
            model,
            what=f"the model of {checkpoint.path}",
            hint="drop --compile to skip",
            **spec_options(model.spec.compile, static_lengths=uses_transpoints(model)),
        )
    return model


def load_tokenizer(path: str | Path) -> Any:
    """The tokenizer stored with a checkpoint (the byte tokenizer when none was stored)."""
    from zoo.data.tokenizer import ByteTokenizer, tokenizer_from_json

    checkpoint = open_checkpoint(path, verify=False)
    data = checkpoint.tokenizer
    if data is None:
        return ByteTokenizer()
    try:
        return tokenizer_from_json(data)
    except ZooError:
        raise
    except Exception as exc:  # the tokenizers library raises its own types on malformed input
        raise CheckpointError(
            f"checkpoint file {checkpoint.path / TOKENIZER_FILE} is not a valid tokenizer: {str(exc)[:200]}"
        ) from exc
