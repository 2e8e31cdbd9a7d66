"""TransPoint schedules: which position P each transmamba layer switches from attention to SSM.

A schedule is a registered class with a ``Params`` model and
``transpoints(n_layers, seq_len, *, step=None) -> list[int]`` (one P per layer, each
clamped to [0, seq_len]). Deterministic schedules ignore ``step``. A random schedule
(``is_random = True``) draws, for a training step, one of a small fixed set of per-layer
lists, so a compiled model sees a bounded number of distinct P tuples (one graph each)
instead of recompiling every step; with ``step=None`` it returns its evaluation schedule.

Relative schedules (fractions of T, or the paper's T=8192 lists scaled to T) round with
:func:`scale`: halves up, and a nonzero TransPoint is never rounded to 0.

A model remembers the TransPoints it was trained with in a :class:`TransPointRecord`
(absolute per-layer values at the training length); inference runs at those by default.

The zoo's schedules live in the top-level ``schedules`` package, loaded with the core.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from zoo.errors import ZooError


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
    prefix at the reference length keeps one at every length.

    The product is rounded to 9 decimals before the half is added, so the binary noise of a
    decimal fraction does not decide a half: 0.145 of 100 tokens is 14.5 -> 15 as written,
    not the float product 14.4999... -> 14. (Plain float arithmetic on purpose: a compiled
    forward evaluates the schedule while tracing, and dynamo folds floats, not Fractions.)"""
    if value <= 0 or seq_len <= 0:
        return 0
    return max(1, math.floor(round(value * seq_len / reference_len, 9) + 0.5))


def from_fractions(fractions: list[float], seq_len: int) -> list[int]:
    return [scale(f, seq_len) for f in fractions]


@dataclass(frozen=True, eq=True)
class TransPointRecord:
    """The TransPoints a model was trained with: one absolute P per layer, at ``seq_len``.

    ``transpoints`` is the schedule evaluated at the training length. For a random schedule
    (``random``) it is the schedule's deterministic counterpart (the list it gives without a
    step, its evaluation schedule); ``schedule`` and ``params`` keep the schedule's name and
    parameters (its distribution) on record.
    """

    seq_len: int
    transpoints: tuple[int, ...]
    schedule: str = "?"
    params: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    random: bool = False

    def at(self, length: int) -> list[int]:
        """The recorded TransPoints for a run of ``length`` tokens: the same absolute positions,
        clamped to ``length`` (a layer whose P lies beyond the run stays in attention). A layer
        trained as attention throughout (P >= seq_len) stays attention past the training length
        too: its SSM path never ran in training, so switching it there would be untrained."""
        return [length if p >= self.seq_len else min(p, length) for p in self.transpoints]

    def to_json(self) -> dict[str, Any]:
        return {
            "seq_len": self.seq_len,
            "transpoints": list(self.transpoints),
            "schedule": self.schedule,
            "params": dict(self.params),
            "random": self.random,
        }

    @classmethod
    def from_json(cls, data: Any, source: str, n_layers: int | None = None) -> TransPointRecord:
        """Parse a record written by :meth:`to_json`; a malformed field is one ZooError naming it.
        Unknown keys are ignored (a newer writer may add some)."""

        def bad(name: str, want: str) -> ZooError:
            return ZooError(f"{source}: trained_transpoints.{name} must be {want}")

        if not isinstance(data, dict):
            raise ZooError(f"{source}: trained_transpoints must be an object, got {type(data).__name__}")
        seq_len, transpoints = data.get("seq_len"), data.get("transpoints")
        if type(seq_len) is not int or seq_len < 1:
            raise bad("seq_len", f"an integer >= 1, got {seq_len!r}")
        if not isinstance(transpoints, list) or not all(type(p) is int and p >= 0 for p in transpoints):
            raise bad("transpoints", "a list of integers >= 0 (one per layer)")
        if n_layers is not None and len(transpoints) != n_layers:
            raise bad("transpoints", f"one per layer: {n_layers} values, got {len(transpoints)}")
        schedule, params, random = data.get("schedule", "?"), data.get("params", {}), data.get("random", False)
        if not isinstance(schedule, str):
            raise bad("schedule", "a schedule name")
        if not isinstance(params, dict):
            raise bad("params", "an object")
        if not isinstance(random, bool):
            raise bad("random", "true or false")
        return cls(seq_len, tuple(transpoints), schedule, params, random)


def record_schedule(schedule: TransPointSchedule, n_layers: int, seq_len: int) -> TransPointRecord:
    """The record of training ``n_layers`` layers under ``schedule`` at ``seq_len`` tokens."""
    return TransPointRecord(
        seq_len=seq_len,
        transpoints=tuple(schedule.transpoints(n_layers, seq_len)),
        schedule=schedule.registry_name,
        params=schedule.params.model_dump(mode="json"),
        random=schedule.is_random,
    )
