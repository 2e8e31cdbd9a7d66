"""What decides a training run's numbers (``TrainConfig``, saved with every checkpoint) and
what a run returns (``TrainResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator

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
    # recompute activations in backward: "none", "full" (every block), "selective" (every block
    # keeps its matmul, attention and SSD outputs, recomputes the rest), "cheap" (every block
    # recomputes only the custom ops backends declare cheap) or k (full, every k-th block)
    activation_checkpointing: Literal["none", "full", "selective", "cheap"] | StrictInt = "none"
    dist_timeout: float = Field(600.0, gt=0, le=86400)  # how long a collective waits for a peer
    # "logits": the model returns logits, cross-entropy in fp32 outside it; "chunked": the model
    # computes the loss in its forward without the [B, T, V] logits (zoo.ops.cross_entropy)
    loss: Literal["logits", "chunked"] = "logits"

    @field_validator("activation_checkpointing", mode="before")
    @classmethod
    def _known_checkpointing(cls, value: Any) -> Any:
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if value in ("none", "full", "selective", "cheap") or (
            isinstance(value, int) and not isinstance(value, bool) and value >= 1
        ):
            return value
        raise ValueError(
            f"{str(value)[:40]!r} is not none, full, selective, cheap or a block interval k >= 1 (every k-th block)"
        )

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


@dataclass
class TrainResult:
    steps: int
    losses: list[float]  # one per step run by this process (train loss)
    final_loss: float
    eval: dict[str, float]
    tokens_per_s: float
    history: list[dict[str, Any]] = field(default_factory=list)
