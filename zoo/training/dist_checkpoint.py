"""Sharded checkpoints through ``torch.distributed.checkpoint``: save, resume (on any number
of processes), and export to the single-file form.

The layout and the one-process model reader are in :mod:`zoo.checkpoint_shards`. Saving is
collective: every rank writes its shards of the model and optimizer into one staging
directory (no rank gathers the whole model), hashes a share of the files, and rank 0 writes
the JSON files and the manifest and renames the directory into ``checkpoints/`` once every
rank is done. A rank that dies mid-save leaves only staging debris, never a checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from zoo import checkpoint as ckpt
from zoo import checkpoint_shards as shards
from zoo.errors import CheckpointError, ZooError
from zoo.training import distributed


def _state_dict_api() -> Any:
    import torch.distributed.checkpoint.state_dict as api

    return api


def save_sharded(
    run_dir: Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    spec: dict[str, Any] | None,
    tokenizer: dict[str, Any] | None,
    keep_last: int | None,
) -> Path:
    """Write checkpoint ``step`` of a multi-process run; every rank calls it. Returns its path."""
    import torch.distributed.checkpoint as dcp

    context = distributed.current()
    if context is None:
        raise ZooError("save_sharded runs inside a process group (torchrun); one process saves single-file")
    api = _state_dict_api()
    tmp = run_dir / ckpt.STAGING / f"{ckpt.checkpoint_name(step)}.sharded"

    def prepare() -> None:
        shutil.rmtree(tmp, ignore_errors=True)
        (run_dir / ckpt.CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        tmp.mkdir(parents=True)

    distributed.from_main(prepare)
    dcp.save(api.get_model_state_dict(model), checkpoint_id=str(tmp / shards.MODEL_DIR))
    dcp.save(api.get_optimizer_state_dict(model, optimizer), checkpoint_id=str(tmp / shards.OPTIMIZER_DIR))
    # DCP returns once its metadata is written, so every shard file exists now: each rank
    # hashes every world_size-th of them, in parallel, instead of rank 0 reading them all.
    names = sorted(
        p.relative_to(tmp).as_posix()
        for folder in (shards.MODEL_DIR, shards.OPTIMIZER_DIR)
        for p in (tmp / folder).iterdir()
        if p.is_file()
    )
    mine = {
        name: {"bytes": (tmp / name).stat().st_size, "sha256": ckpt._sha256(tmp / name)}
        for name in names[context.rank :: context.world_size]
    }
    gathered: list[Any] = [None] * context.world_size if context.is_main else []
    dist.gather_object(mine, gathered if context.is_main else None, dst=0)

    def publish() -> Path:
        hashed = {name: info for part in gathered for name, info in part.items()}
        state = {**trainer_state, "step": step, "world_size": context.world_size}
        for name, data in ((ckpt.SPEC_FILE, spec), (ckpt.TOKENIZER_FILE, tokenizer), (ckpt.STATE_FILE, state)):
            if data is not None:
                ckpt._write_json(tmp / name, data)
        try:
            return ckpt.publish_checkpoint(
                run_dir,
                tmp,
                step,
                keep_last=keep_last,
                hashed=hashed,
                manifest={"version": shards.VERSION, "layout": shards.LAYOUT, "world_size": context.world_size},
            )
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CheckpointError(
                f"cannot write checkpoint step {step} into {run_dir}: {exc.strerror or exc}; "
                "the previous checkpoints are intact"
            ) from exc

    return distributed.from_main(publish)


def load_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, checkpoint: ckpt.Checkpoint) -> None:
    """Load a sharded checkpoint into ``model`` (FSDP-sharded in a process group, or plain on one
    process) and ``optimizer``; DCP reshards from the writer's world size to this one."""
    api = _state_dict_api()
    in_group = distributed.current() is not None
    model_state = api.get_model_state_dict(model)
    shards.load_dcp(model_state, checkpoint.path / shards.MODEL_DIR, process_group=in_group)
    api.set_model_state_dict(model, model_state)
    if optimizer is None:
        return
    if not checkpoint.has(f"{shards.OPTIMIZER_DIR}/{shards.DCP_METADATA}"):
        raise CheckpointError(f"checkpoint {checkpoint.path} holds no optimizer state")
    optimizer_state = api.get_optimizer_state_dict(model, optimizer)
    shards.load_dcp(optimizer_state, checkpoint.path / shards.OPTIMIZER_DIR, process_group=in_group)
    api.set_optimizer_state_dict(model, optimizer, optimizer_state)


def load_full_into_sharded(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, checkpoint: ckpt.Checkpoint
) -> None:
    """A single-file checkpoint into an FSDP model: every rank reads the whole file (it is one
    process's checkpoint, so it fits one host) and keeps its own shards."""
    api = _state_dict_api()
    options = api.StateDictOptions(full_state_dict=True)
    full = api.get_model_state_dict(model, options=options)
    # tied parameters share one tensor here too, so the file's single copy fills both names
    owners = {name: id(p) for name, p in model.named_parameters(remove_duplicate=False)}
    shared: dict[Any, torch.Tensor] = {}
    plain = {
        name: shared.setdefault(owners.get(name, name), torch.empty(tuple(t.shape), dtype=t.dtype))
        for name, t in full.items()
    }
    holder = _TensorHolder(plain)
    ckpt.load_model_state(holder, checkpoint)
    api.set_model_state_dict(model, holder.state, options=options)
    meta = checkpoint.trainer_state.get("optimizer")
    if meta is None or not checkpoint.has(ckpt.OPTIMIZER_FILE):
        raise CheckpointError(f"checkpoint {checkpoint.path} holds no optimizer state")
    stored = ckpt.optimizer_from_safetensors(checkpoint.read_tensors(ckpt.OPTIMIZER_FILE), meta)
    # the one-process state is keyed by parameter index, in param_groups order; the
    # distributed API keys it by name: the optimizer's own groups give the order.
    names = [n for group in api.get_optimizer_state_dict(model, optimizer)["param_groups"] for n in group["params"]]
    if len(names) != sum(len(g["params"]) for g in stored["param_groups"]):
        raise CheckpointError(f"{checkpoint.path / ckpt.OPTIMIZER_FILE} does not match this model's parameters")
    state = {names[index]: entry for index, entry in stored["state"].items()}
    groups, start = [], 0
    for group in stored["param_groups"]:
        count = len(group["params"])
        groups.append({**group, "params": names[start : start + count]})
        start += count
    api.set_optimizer_state_dict(model, optimizer, {"state": state, "param_groups": groups}, options=options)


class _TensorHolder(torch.nn.Module):
    """A module whose state_dict is a given dict of tensors (for ``ckpt.load_model_state``)."""

    def __init__(self, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.state = state

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return self.state


def export(source: str | Path, out: str | Path) -> Path:
    """Convert a sharded checkpoint (or a run's latest) into a single-file checkpoint under the
    run directory ``out`` (model, optimizer, JSON files, manifest), on one process."""
    from zoo.builder import build
    from zoo.training.optim import make_optimizer

    checkpoint = ckpt.open_checkpoint(source)
    if not checkpoint.sharded:
        raise ZooError(f"{checkpoint.path} is a single-file checkpoint already; copy it instead")
    spec = checkpoint.spec
    if spec is None:
        raise CheckpointError(f"checkpoint {checkpoint.path} has no {ckpt.SPEC_FILE}; cannot rebuild the model")
    state = dict(checkpoint.trainer_state)
    config = state.get("config", {})
    model = build(spec, device="cpu", compile=False)
    optimizer = None
    if checkpoint.has(f"{shards.OPTIMIZER_DIR}/{shards.DCP_METADATA}"):
        optimizer = make_optimizer(
            model,
            lr=config.get("lr", 1e-3),
            weight_decay=config.get("weight_decay", 0.0),
            betas=tuple(config.get("betas", (0.9, 0.95))),
            eps=config.get("eps", 1e-8),
            fused=False,
        )
    load_sharded(model, optimizer, checkpoint)
    for key in ("step", "world_size", "optimizer"):
        state.pop(key, None)
    return ckpt.save_checkpoint(
        Path(out),
        checkpoint.step,
        model=model,
        optimizer=optimizer,
        trainer_state=state,
        spec=spec,
        tokenizer=checkpoint.tokenizer,
        keep_last=None,
    )
