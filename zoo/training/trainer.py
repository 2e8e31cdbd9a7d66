"""The training loop: AdamW + warmup/cosine, clipping, accumulation, autocast, compile, resume.

Determinism: batches are a pure function of ``(seed, step, micro)`` (see
:mod:`zoo.data.tasks`), the learning rate a pure function of the step, and the checkpoint
holds weights, AdamW moments and RNG states; so on CPU in fp32 a run stopped at step k and
resumed reproduces the uninterrupted run's losses bit for bit.
"""

from __future__ import annotations

import base64
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

from zoo import checkpoint as ckpt
from zoo.compile import compiled
from zoo.data.synthetic import IGNORE
from zoo.data.tasks import Task
from zoo.errors import ZooError
from zoo.training.metrics import JsonlLogger, ProgressBar, truncate_jsonl
from zoo.training.optim import lr_at, make_optimizer

# tokens/s leaves out the first steps of a process (compilation, allocator warm-up).
WARMUP_TIMING_STEPS = 2
CALIBRATION_STEPS = 8


_MAX_STEPS = 10**9
Beta = Annotated[float, Field(ge=0, lt=1)]


class TrainConfig(BaseModel):
    """Everything that decides a run's numbers (saved with every checkpoint).

    Every number is bounded and finite, and no bool passes for an int, so a typo is an
    error at construction rather than a NaN or a crash some steps in."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    steps: StrictInt = Field(1000, ge=1, le=_MAX_STEPS)
    batch_size: StrictInt = Field(16, ge=1, le=1 << 20)
    grad_accum: StrictInt = Field(1, ge=1, le=1 << 16)
    lr: float = Field(3e-3, gt=0, le=10)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: StrictInt = Field(50, ge=0, le=_MAX_STEPS)
    weight_decay: float = Field(0.1, ge=0, le=10)
    betas: tuple[Beta, Beta] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0, le=1)
    grad_clip: float | None = Field(1.0, gt=0, le=1e6)
    seed: StrictInt = Field(0, ge=0, lt=1 << 63)
    compile: StrictBool = True
    # None: evaluate compiled on CUDA, eagerly on CPU (measured on 2 CPU cores: compiling the
    # eval graph of transmamba-tiny took 91 s cold, an eager evaluation 0.4 s).
    compile_eval: StrictBool | None = None
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    eval_every: StrictInt = Field(0, ge=0, le=_MAX_STEPS)  # 0: only at the end
    eval_batch_size: StrictInt | None = Field(None, ge=1, le=1 << 20)
    save_every: StrictInt = Field(0, ge=0, le=_MAX_STEPS)  # 0: only at the end (when out_dir is set)
    keep_last: StrictInt = Field(3, ge=1, le=1 << 20)
    progress: StrictBool = True

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value == "auto":
            return value
        try:
            torch.device(value)
        except (RuntimeError, ValueError):
            raise ValueError(f"unknown device {value[:80]!r}; e.g. auto, cpu, cuda, cuda:1") from None
        return value


class NonFiniteLossError(ZooError):
    """Training produced a NaN or infinite loss (or weights); the run stops, nothing is saved."""


@dataclass
class TrainResult:
    steps: int
    losses: list[float]  # one per step run by this process (train loss)
    final_loss: float
    eval: dict[str, float]
    tokens_per_s: float
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _rng_state() -> dict[str, Any]:
    state = {"torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode()}
    if torch.cuda.is_available():
        state["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    def decode(text: str) -> torch.Tensor:
        return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)

    torch.set_rng_state(decode(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([decode(s) for s in state["cuda"]])


class Trainer:
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
        self.device = resolve_device(self.config.device)
        torch.manual_seed(self.config.seed)
        self.model = model.to(self.device)
        self.n_params = count_params(self.model)
        precision = self.config.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" else "fp32"
        self.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
        self.optimizer = make_optimizer(
            self.model,
            lr=self.config.lr,
            weight_decay=self.config.weight_decay,
            betas=self.config.betas,
            eps=self.config.eps,
        )
        schedule = getattr(model, "schedule", None)
        self.random_schedule = bool(getattr(schedule, "is_random", False))
        if self.config.compile:
            # the random TransPoint schedule draws from a bounded set: room for one graph each
            recompile_limit = None
            if self.random_schedule:
                recompile_limit = getattr(getattr(schedule, "params", None), "n_variants", 56) + 8
            name = getattr(getattr(model, "spec", None), "name", None)
            self.forward_model = compiled(
                self.model, what=f"the training forward of {name or 'the model'}", recompile_limit=recompile_limit
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
        """Explicit TransPoints for the ``random`` schedule (a bounded set, so bounded graphs)."""
        if not self.random_schedule:
            return None
        return self.model.schedule.transpoints(self.model.n_layers, seq_len, step=step)

    def _logits(self, inputs: torch.Tensor, transpoints: list[int] | None, *, training: bool = True) -> torch.Tensor:
        kwargs = {} if transpoints is None else {"transpoints": transpoints}
        model = self.forward_model if training or self.compile_eval else self.model
        if self.autocast_dtype is not None:
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                return model(inputs, **kwargs)
        return model(inputs, **kwargs)

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor, transpoints: list[int] | None = None) -> torch.Tensor:
        logits = self._logits(inputs, transpoints).float()
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)

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
        self.model.train()
        lr = self.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        total = torch.zeros((), device=self.device)
        tokens = 0
        for micro in range(c.grad_accum):
            inputs, targets = self.task.train_batch(step, micro, c.batch_size)
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            loss = self.loss(inputs, targets, self.transpoints(inputs.shape[1], step))
            (loss / c.grad_accum).backward()
            total += loss.detach()
            tokens += inputs.numel()
        if c.grad_clip is not None:
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
        count = 0
        for inputs, targets in self.task.eval_batches(batch_size):
            inputs, targets = inputs.to(self.device), targets.to(self.device)
            transpoints = self.transpoints(inputs.shape[1], None)
            logits = self._logits(inputs, transpoints, training=False).float()
            mask = targets != IGNORE
            loss_sum += F.cross_entropy(logits[mask], targets[mask], reduction="sum").double()
            correct += (logits[mask].argmax(-1) == targets[mask]).sum()
            count += int(mask.sum())
        self.model.train()
        if count == 0:
            raise ZooError("the evaluation set has no scored positions")
        loss = loss_sum.item() / count
        if self.task.metric == "accuracy":
            metrics = {"eval_loss": loss, "eval_accuracy": correct.item() / count}
            chance = getattr(self.task, "chance", None)  # the no-recall floor to read the accuracy against
            return metrics if chance is None else {**metrics, "eval_chance": float(chance)}
        return {"eval_loss": loss, "eval_ppl": math.exp(min(loss, 50.0))}

    # ------------------------------------------------------------ checkpoints

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
        return ckpt.save_checkpoint(
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
        finite = torch.stack([p.detach().isfinite().all() for p in self.model.parameters()]).all()
        if not bool(finite):
            raise NonFiniteLossError(
                f"step {self.step}: the weights hold NaN or infinite values; not saving a checkpoint"
                + (f" (the last good one stays in {self.out_dir / ckpt.CHECKPOINTS})" if self.out_dir else "")
            )

    def resume(self, path: str | Path | None = None) -> int:
        """Restore from ``path`` (a checkpoint or run directory; default the run's latest). Returns its step."""
        source = path if path is not None else self.out_dir
        if source is None:
            raise ZooError("resume needs a checkpoint path or an out_dir")
        checkpoint = ckpt.open_checkpoint(source)
        state = checkpoint.trainer_state
        saved_task = state.get("task", {})
        if saved_task and saved_task != self.task.describe():
            raise ZooError(
                f"cannot resume from {checkpoint.path}: it was trained on {saved_task}, "
                f"this run uses {self.task.describe()}"
            )
        ckpt.load_model_state(self.model, checkpoint)
        ckpt.load_optimizer_state(self.optimizer, checkpoint)
        if "rng" in state:
            _set_rng_state(state["rng"])
        self.step = checkpoint.step
        return self.step

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
        stop_at: int | None = None,
        time_budget_s: float | None = None,
        budget_evals: int = 0,
        eval_cost_s: float = 0.0,
    ) -> TrainResult:
        """Train to ``config.steps``; ``resume`` continues from the run's latest checkpoint.

        ``stop_at`` ends the loop after that step without the final evaluation and save, as a
        crash would (tests use it to interrupt a run).

        ``time_budget_s`` fits the run into a wall-clock budget: every ``CALIBRATION_STEPS``
        steps it times the recent steps (the first, which compiles, excluded) and sets
        ``config.steps`` (at most the configured value) so that training plus ``budget_evals``
        evaluations of ``eval_cost_s`` each end in time; evaluations are evenly spaced. The
        cosine schedule follows the moving end point, so such a run is not resumable exactly.
        """
        c = self.config
        metrics_path = None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clear_staging(self.out_dir)
            metrics_path = self.out_dir / "metrics.jsonl"
            if resume and ckpt.latest_checkpoint(self.out_dir) is not None:
                self.resume()
                truncate_jsonl(metrics_path, self.step)
            elif metrics_path.exists():
                metrics_path.unlink()
        logger = JsonlLogger(metrics_path)
        bar = ProgressBar(c.steps, enabled=c.progress)
        losses: list[float] = []
        step_times: list[float] = []
        eval_metrics: dict[str, float] = {}
        tokens_total, time_total = 0, 0.0
        fit_start = time.perf_counter()
        self.max_steps, self.budget_evals = c.steps, budget_evals
        try:
            while self.step < c.steps and (stop_at is None or self.step < stop_at):
                start = time.perf_counter()
                record = self.train_step(self.step)
                elapsed = time.perf_counter() - start
                self.step += 1
                step_times.append(elapsed)
                if len(step_times) > WARMUP_TIMING_STEPS or c.steps <= 2 * WARMUP_TIMING_STEPS:
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

    def _nonfinite_message(self, loss: float) -> str:
        where = ""
        if self.out_dir is not None:
            latest = ckpt.latest_checkpoint(self.out_dir)
            where = f"; the last good checkpoint is {latest}" if latest else "; no checkpoint was saved"
        return f"training diverged: loss is {loss} at step {self.step}{where} (lower lr or set grad_clip)"

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
