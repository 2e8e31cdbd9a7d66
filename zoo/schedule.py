"""TransPoint schedules: which position P each transmamba layer switches from attention to SSM.

A schedule is a registered class with a ``Params`` model and
``transpoints(n_layers, seq_len, *, step=None) -> list[int]`` (one P per layer, each
clamped to [0, seq_len]). Deterministic schedules ignore ``step``. A random schedule
(``is_random = True``) draws, for a training step, one of a small fixed set of per-layer
lists, so a compiled model sees a bounded number of distinct P tuples (one graph each)
instead of recompiling every step; with ``step=None`` it returns its evaluation schedule.

Relative schedules (fractions of T, or the paper's T=8192 lists scaled to T) round with
:func:`scale`: halves up, and a nonzero TransPoint is never rounded to 0.

The zoo's schedules live in the top-level ``schedules`` package, loaded with the core.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import BaseModel, ConfigDict


class ScheduleParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class TransPointSchedule:
    Params: ClassVar[type[BaseModel]] = ScheduleParams
    is_random: ClassVar[bool] = False
    registry_name: ClassVar[str] = "?"

    def __init__(self, params: BaseModel | dict | None = None) -> None:
        if params is None:
            params = self.Params()
        elif isinstance(params, dict):
            params = self.Params.model_validate(params)
        self.params = params

    def transpoints(self, n_layers: int, seq_len: int, *, step: int | None = None) -> list[int]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{self.registry_name}({args})"


class NoSchedule(TransPointSchedule):
    """Placeholder for models without transmamba layers."""

    def transpoints(self, n_layers: int, seq_len: int, *, step: int | None = None) -> list[int]:
        return [seq_len] * n_layers


def clamp(values: list[int], seq_len: int) -> list[int]:
    return [max(0, min(int(v), seq_len)) for v in values]


def cyclic(values: list[int], n_layers: int) -> list[int]:
    """Layer l takes values[l % len(values)] (the paper's rule)."""
    return [values[layer % len(values)] for layer in range(n_layers)]


def scale(value: float, seq_len: int, reference_len: int = 1) -> int:
    """``value * seq_len / reference_len`` as a TransPoint: halves round up (never to even),
    and a nonzero value never becomes 0 (it is at least 1), so a layer that has an attention
    prefix at the reference length keeps one at every length."""
    if value <= 0 or seq_len <= 0:
        return 0
    return max(1, math.floor(value * seq_len / reference_len + 0.5))


def from_fractions(fractions: list[float], seq_len: int) -> list[int]:
    return [scale(f, seq_len) for f in fractions]
