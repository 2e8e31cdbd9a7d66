"""The trainer's checkpoint side: its state, saving (single-file on one process, sharded
under torchrun), resuming from either form, and the run directory's bookkeeping."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from zoo import checkpoint as ckpt
from zoo.errors import ZooError
from zoo.training import distributed
from zoo.training.rng import rng_state as _rng_state
from zoo.training.rng import set_rng_state as _set_rng_state


class NonFiniteLossError(ZooError):
    """Training produced a NaN or infinite loss (or weights); the run stops, nothing is saved."""


class CheckpointingMixin:
    """Methods of :class:`zoo.training.trainer.Trainer` (which sets the attributes they use)."""

    config: Any
    task: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    out_dir: Path | None
    tokenizer: Any
    dist: distributed.Distributed | None
    n_params: int
    step: int

    def trainer_state(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(mode="json"),
            "task": self.task.describe(),
            "rng": _rng_state(),
            "n_params": self.n_params,
        }

    def save(self) -> Path:
        if self.out_dir is None:
            raise ZooError("this trainer has no out_dir to save checkpoints into")
        self._check_finite_weights()
        save = ckpt.save_checkpoint
        if self.dist is not None:  # every rank writes its shards
            from zoo.training.dist_checkpoint import save_sharded as save
        return save(
            self.out_dir,
            self.step,
            model=self.model,
            optimizer=self.optimizer,
            trainer_state=self.trainer_state(),
            spec=ckpt.spec_to_json(self.model),
            tokenizer=self.tokenizer.to_json() if self.tokenizer is not None else None,
            keep_last=self.config.keep_last,
        )

    def _check_finite_weights(self) -> None:
        # One host sync per save: a checkpoint never holds a NaN or infinite weight.
        if self.dist is not None:
            finite = distributed.all_finite(list(self.model.parameters()))
        else:
            finite = bool(torch.stack([p.detach().isfinite().all() for p in self.model.parameters()]).all())
        if not finite:
            raise NonFiniteLossError(
                f"step {self.step}: the weights hold NaN or infinite values; not saving a checkpoint"
                + (f" (the last good one stays in {self.out_dir / ckpt.CHECKPOINTS})" if self.out_dir else "")
            )

    def resume(self, path: str | Path | None = None) -> int:
        """Restore from ``path`` (a checkpoint or run directory; default the run's latest). Returns its step."""
        source = path if path is not None else self.out_dir
        if source is None:
            raise ZooError("resume needs a checkpoint path or an out_dir")
        # rank 0 verifies the files (hashes); the others take its word (and its error, if any)
        checkpoint = distributed.from_main(lambda: ckpt.open_checkpoint(source))
        state = checkpoint.trainer_state
        saved_task = state.get("task", {})
        if saved_task and saved_task != self.task.describe():
            raise ZooError(
                f"cannot resume from {checkpoint.path}: it was trained on {saved_task}, "
                f"this run uses {self.task.describe()}"
            )
        if checkpoint.sharded or self.dist is not None:
            from zoo.training import dist_checkpoint

            load = dist_checkpoint.load_sharded if checkpoint.sharded else dist_checkpoint.load_full_into_sharded
            load(self.model, self.optimizer, checkpoint)
        else:
            ckpt.load_model_state(self.model, checkpoint)
            ckpt.load_optimizer_state(self.optimizer, checkpoint)
        if "rng" in state:
            _set_rng_state(state["rng"])
        self.step = checkpoint.step
        return self.step

    def _prepare_out_dir(self, resume: bool, overwrite: bool = False) -> bool:
        """Create the run directory, drop staging debris; True when there is a checkpoint to resume.

        A new run never shares the directory with an earlier run's checkpoints (the latest of
        them would then pass for this run's model): it is refused unless ``overwrite``, which
        deletes them (and the earlier metrics) first."""
        assert self.out_dir is not None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ckpt.clear_staging(self.out_dir)
        metrics_path = self.out_dir / "metrics.jsonl"
        latest = ckpt.latest_checkpoint(self.out_dir)
        if resume and latest is not None:
            return True
        if latest is not None:
            if not overwrite:
                raise ZooError(
                    f"{self.out_dir} holds an earlier run (latest checkpoint {latest.name}); resume it "
                    "(resume=True), start over there (overwrite=True deletes its checkpoints) or choose another "
                    "out_dir"
                )
            shutil.rmtree(self.out_dir / ckpt.CHECKPOINTS)
        if metrics_path.exists():
            metrics_path.unlink()
        return False

    def _nonfinite_message(self, loss: float) -> str:
        where = ""
        if self.out_dir is not None:
            latest = ckpt.latest_checkpoint(self.out_dir)
            where = f"; the last good checkpoint is {latest}" if latest else "; no checkpoint was saved"
        return f"training diverged: loss is {loss} at step {self.step}{where} (lower lr or set grad_clip)"
