"""The training loop: AdamW + warmup/cosine, clipping, accumulation, autocast, compile, resume.

Determinism: batches are a pure function of ``(seed, step, micro)`` (see
:mod:`zoo.data.tasks`), the learning rate a pure function of the step, and the checkpoint
holds weights, AdamW moments and RNG states; so on CPU in fp32 a run stopped at step k and
resumed reproduces the uninterrupted run's losses bit for bit.
"""

from __future__ import annotations

import inspect
import math
import time
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from zoo.compile import compiled, dynamic_shapes
from zoo.data.synthetic import IGNORE
from zoo.data.tasks import Task, train_shard
from zoo.devices import parse_device
from zoo.errors import ZooError
from zoo.models.pretrained import record_training_transpoints, uses_transpoints
from zoo.training import distributed
from zoo.training.checkpointing import CheckpointingMixin, NonFiniteLossError
from zoo.training.config import TrainConfig, TrainResult
from zoo.training.metrics import JsonlLogger, ProgressBar, truncate_jsonl
from zoo.training.optim import lr_at, make_optimizer

# tokens/s leaves out the first steps of a process (compilation, allocator warm-up).
WARMUP_TIMING_STEPS = 2
CALIBRATION_STEPS = 8


def resolve_device(name: str) -> torch.device:
    """``TrainConfig.device`` as a device this machine has (one-line ``DeviceError`` otherwise)."""
    return parse_device(name, flag=None)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``TrainConfig.precision`` on ``device``: ``auto`` is bf16 autocast on CUDA, fp32 elsewhere."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" else "fp32"


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


class Trainer(CheckpointingMixin):
    """Train ``model`` on ``task``. With ``out_dir`` it writes metrics.jsonl and checkpoints there."""

    def __init__(
        self,
        model: torch.nn.Module,
        task: Task,
        config: TrainConfig | None = None,
        *,
        out_dir: str | Path | None = None,
        tokenizer: Any = None,
    ) -> None:
        self.config = config or TrainConfig()
        self.task = task
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.tokenizer = tokenizer if tokenizer is not None else getattr(task, "tokenizer", None)
        self.dist = distributed.current()  # None: this process trains alone
        self.device = self.dist.device if self.dist is not None else resolve_device(self.config.device)
        torch.manual_seed(self.config.seed)
        self.model = model.to(self.device)
        self.n_params = count_params(self.model)
        precision = resolve_precision(self.config.precision, self.device)
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        schedule = getattr(model, "schedule", None)
        self.random_schedule = bool(getattr(schedule, "is_random", False))
        variants = 1
        if self.random_schedule:  # the bound on its distinct TransPoint lists (one graph each)
            variants = getattr(schedule, "n_variants", 56)
        # a task that trains at several lengths (SyntheticTask.train_seq_lens): a graph per length
        lengths = len(set(getattr(task, "train_seq_lens", None) or ())) or 1
        variants *= lengths
        # FSDP and activation checkpointing work block by block, and so does compile with them
        self.per_block = self.dist is not None or self.config.activation_checkpointing != "none"
        if self.per_block:
            distributed.prepare_model(
                self.model,
                context=self.dist,
                activation_checkpointing=self.config.activation_checkpointing,
                compile=self.config.compile,
                param_dtype=self.autocast_dtype,
                recompile_limit=(variants + 8) * max(1, getattr(model, "n_layers", 1)),
            )
        forward_params = inspect.signature(model.forward).parameters
        # zoo's CausalLM counts a recall task's hits beside its loss without forming the logits
        self.counts_hits = "count_hits" in forward_params
        if self.config.loss == "chunked" and "targets" not in forward_params:
            raise ZooError(
                f"loss=chunked needs a model whose forward takes targets (zoo's CausalLM does); "
                f"{type(model).__name__} does not: use loss=logits"
            )
        self.optimizer = make_optimizer(
            self.model,
            lr=self.config.lr,
            weight_decay=self.config.weight_decay,
            betas=self.config.betas,
            eps=self.config.eps,
        )
        if self.config.compile and not self.per_block:
            # the random TransPoint schedule draws from a bounded set, a task's training lengths
            # are a few: room for one graph each
            recompile_limit = variants + 8 if self.random_schedule or lengths > 1 else None
            spec = getattr(model, "spec", None)
            # a zoo ModelSpec's compile.dynamic; None for a model without one (or a plain dict spec)
            spec_dynamic = getattr(getattr(spec, "compile", None), "dynamic", None)
            self.forward_model = compiled(
                self.model,
                what=f"the training forward of {getattr(spec, 'name', None) or 'the model'}",
                recompile_limit=recompile_limit,
                dynamic=dynamic_shapes(spec_dynamic, static_lengths=uses_transpoints(self.model)),
            )
        else:
            self.forward_model = self.model
        compile_eval = self.config.compile_eval
        if compile_eval is None:
            compile_eval = self.config.compile and self.device.type == "cuda"
        self.compile_eval = compile_eval
        self.step = 0
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------ pieces

    def transpoints(self, seq_len: int, step: int | None) -> list[int] | None:
        """Explicit TransPoints for a training step of the ``random`` schedule (a bounded set, so
        bounded graphs); evaluation (step None) runs at the model's default TransPoints."""
        if not self.random_schedule or step is None:
            return None
        return self.model.schedule.transpoints(self.model.n_layers, seq_len, step=step)

    def _forward(self, inputs: torch.Tensor, transpoints: list[int] | None, *, training: bool = True, **kwargs: Any):
        """The model's output: logits, or with ``targets`` in ``kwargs`` its loss (and with
        ``count_hits`` the pair (loss, hits))."""
        if transpoints is not None:
            kwargs["transpoints"] = transpoints
        model = self.forward_model if training or self.compile_eval else self.model
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                return model(inputs, **kwargs)
        return model(inputs, **kwargs)

    def loss(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        transpoints: list[int] | None = None,
        *,
        reduction: Literal["mean", "sum"] = "mean",
        training: bool = True,
    ) -> torch.Tensor:
        """Cross-entropy over the scored targets by ``config.loss``: from the logits, or in the model."""
        if self.config.loss == "chunked":
            kwargs = {"targets": targets, "loss_reduction": reduction, "ignore_index": IGNORE}
            return self._forward(inputs, transpoints, training=training, **kwargs)
        logits = self._forward(inputs, transpoints, training=training).float()
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction=reduction)

    def lr(self, step: int) -> float:
        c = self.config
        return lr_at(
            step,
            base_lr=c.lr,
            warmup_steps=c.warmup_steps,
            total_steps=c.steps,
            min_lr_ratio=c.min_lr_ratio,
        )

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step (``grad_accum`` micro-batches); ``step`` counts from 0."""
        c = self.config
        record_training_transpoints(self.model, self.task.seq_len)  # checkpoints keep it, inference uses it
        self.model.train()
        lr = self.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        tokens = 0
        rank, world = (self.dist.rank, self.dist.world_size) if self.dist is not None else (0, 1)
        for micro in range(c.grad_accum):
            inputs, targets = train_shard(self.task, step, micro, c.batch_size, rank, world)
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            # drawn at the task's length, as a fixed schedule's recorded TransPoints are: a shorter
            # step (SyntheticTask.train_seq_lens) runs them cut off at its length, as inference does
            transpoints = self.transpoints(self.task.seq_len, step)
            if self.dist is None:
                loss = self.loss(inputs, targets, transpoints)
            else:  # this rank's share of the global batch's mean loss
                loss_sum = self.loss(inputs, targets, transpoints, reduction="sum")
                loss = distributed.data_parallel_mean(loss_sum, targets, IGNORE)
            (loss / c.grad_accum).backward()
            total += loss.detach()
            tokens += inputs.numel() * world
        if self.dist is not None:
            total = distributed.mean_over_ranks(total)
            grad_norm = distributed.grad_norm(list(self.model.parameters()), c.grad_clip)
        elif c.grad_clip is not None:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        else:
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {
            "loss": (total / c.grad_accum).item(),
            "lr": lr,
            "grad_norm": grad_norm.item(),
            "tokens": tokens,
        }

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation loss and perplexity (text), or loss and recall accuracy (synthetic tasks)."""
        self.model.eval()
        batch_size = self.config.eval_batch_size or self.config.batch_size
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        count = torch.zeros((), dtype=torch.long, device=self.device)
        batches = self.task.eval_batches(batch_size)
        accuracy = self.task.metric == "accuracy"  # counts the hits beside the loss
        if self.dist is not None:  # every rank its share, all in step (FSDP forwards are collective)
            batches = distributed.eval_share(batches, self.dist, IGNORE)
        for inputs, targets in batches:
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            transpoints = self.transpoints(inputs.shape[1], None)
            mask = targets != IGNORE
            count += mask.sum()
            if accuracy and self.counts_hits:  # loss and hits chunk by chunk: no logits [B,T,V]
                kwargs = {"targets": targets, "loss_reduction": "sum", "ignore_index": IGNORE, "count_hits": True}
                loss, hits = self._forward(inputs, transpoints, training=False, **kwargs)
                loss_sum += loss.double()
                correct += hits
            elif accuracy or self.config.loss != "chunked":
                logits = self._forward(inputs, transpoints, training=False).float()
                loss_sum += F.cross_entropy(logits[mask], targets[mask], reduction="sum").double()
                if accuracy:
                    correct += (logits[mask].argmax(-1) == targets[mask]).sum()
            else:  # text: the loss alone, without the logits
                loss_sum += self.loss(inputs, targets, transpoints, reduction="sum", training=False).double()
        self.model.train()
        if self.dist is not None:
            for total in (loss_sum, correct, count):
                torch.distributed.all_reduce(total)
        count = int(count)
        if count == 0:
            raise ZooError("the evaluation set has no scored positions")
        loss = loss_sum.item() / count
        if accuracy:
            metrics = {"eval_loss": loss, "eval_accuracy": correct.item() / count}
            chance = getattr(self.task, "chance", None)  # the no-recall floor to read the accuracy against
            return metrics if chance is None else {**metrics, "eval_chance": float(chance)}
        return {"eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0))}

    # ------------------------------------------------------------ the loop

    def fit(self, **kwargs: Any) -> TrainResult:
        """Train to ``config.steps`` holding the run directory's lock; see :meth:`_fit`."""
        if self.out_dir is None:
            return self._fit(**kwargs)
        from zoo.training.runs import run_lock

        with run_lock(self.out_dir):
            return self._fit(**kwargs)

    def _fit(
        self,
        *,
        resume: bool = False,
        overwrite: bool = False,
        stop_at: int | None = None,
        time_budget_s: float | None = None,
        budget_evals: int = 0,
        eval_cost_s: float = 0.0,
    ) -> TrainResult:
        """Train to ``config.steps``; ``resume`` continues from the run's latest checkpoint.
        A new run in a directory that holds an earlier run's checkpoints is refused unless
        ``overwrite``, which deletes them first.

        ``stop_at`` ends the loop after that step without the final evaluation and save, as a
        crash would (tests use it to interrupt a run).

        ``time_budget_s`` fits the run into a wall-clock budget: every ``CALIBRATION_STEPS``
        steps it times the recent steps (the first, which compiles, excluded) and sets
        ``config.steps`` (at most the configured value) so that training plus ``budget_evals``
        evaluations of ``eval_cost_s`` each end in time; evaluations are evenly spaced. The
        cosine schedule follows the moving end point, so such a run is not resumable exactly.
        """
        c = self.config
        main = self.dist is None or self.dist.is_main  # only rank 0 writes metrics and shows progress
        if time_budget_s is not None and self.dist is not None:
            raise ZooError("a time budget fits one process's run; launch it without torchrun")
        metrics_path = None
        if self.out_dir is not None:
            metrics_path = self.out_dir / "metrics.jsonl"
            if distributed.from_main(lambda: self._prepare_out_dir(resume, overwrite)):
                self.resume()
                if main:
                    truncate_jsonl(metrics_path, self.step)
        logger = JsonlLogger(metrics_path if main else None)
        bar = ProgressBar(c.steps, enabled=c.progress and main)
        losses: list[float] = []
        step_times: list[float] = []
        eval_metrics: dict[str, float] = {}
        tokens_total, time_total = 0, 0.0
        fit_start, first_step = time.perf_counter(), self.step
        self.max_steps, self.budget_evals = c.steps, budget_evals
        try:
            while self.step < c.steps and (stop_at is None or self.step < stop_at):
                start = time.perf_counter()
                record = self.train_step(self.step)
                elapsed = time.perf_counter() - start
                self.step += 1
                step_times.append(elapsed)
                # the first steps of a fit compile: timed only when the fit is too short to leave them out
                if len(step_times) > WARMUP_TIMING_STEPS or c.steps - first_step <= 2 * WARMUP_TIMING_STEPS:
                    tokens_total += record["tokens"]
                    time_total += elapsed
                if time_budget_s is not None and len(step_times) % CALIBRATION_STEPS == 0:
                    evals_left = budget_evals - sum("eval_loss" in h for h in self.history)
                    c = self._fit_budget(
                        time_budget_s - (time.perf_counter() - fit_start),
                        step_times[1:][-4 * CALIBRATION_STEPS :],
                        evals_left,
                        eval_cost_s,
                    )
                    bar.total = c.steps
                row = {
                    "step": self.step,
                    "loss": record["loss"],
                    "lr": record["lr"],
                    "grad_norm": record["grad_norm"],
                    "tokens_per_s": record["tokens"] / elapsed,
                }
                if not math.isfinite(record["loss"]):  # read on the host already: no extra sync
                    raise NonFiniteLossError(self._nonfinite_message(record["loss"]))
                losses.append(record["loss"])
                last = self.step == c.steps
                if last or (c.eval_every and self.step % c.eval_every == 0):
                    eval_metrics = self.evaluate()
                    row.update(eval_metrics)
                logger.log(row)
                self.history.append(row)
                bar.update(self.step, loss=record["loss"], lr=record["lr"], **eval_metrics)
                if self.out_dir is not None and (last or (c.save_every and self.step % c.save_every == 0)):
                    self.save()
        finally:
            logger.close()
            bar.close()
        if not losses and not eval_metrics:
            eval_metrics = self.evaluate()
        return TrainResult(
            steps=self.step,
            losses=losses,
            final_loss=losses[-1] if losses else float("nan"),
            eval=eval_metrics,
            tokens_per_s=tokens_total / time_total if time_total else 0.0,
            history=self.history,
        )

    def _fit_budget(
        self, remaining_s: float, recent_step_times: list[float], evals_left: int, eval_cost_s: float
    ) -> TrainConfig:
        # The median of recent steps, re-estimated every CALIBRATION_STEPS steps, so a machine
        # that gets busier mid-run still ends near the budget.
        per_step = sorted(recent_step_times)[len(recent_step_times) // 2]
        affordable = int(max(0.0, remaining_s - max(0, evals_left) * eval_cost_s) / per_step)
        steps = max(self.step, min(self.max_steps, self.step + affordable))
        update: dict[str, Any] = {"steps": steps}
        if self.budget_evals:
            update["eval_every"] = max(1, steps // self.budget_evals)
        self.config = self.config.model_copy(update=update)
        return self.config
