"""Which TransPoints an inference run uses (see docs/inference.md, "TransPoints at inference").

By default a run uses ``model.default_transpoints(length)``: the absolute per-layer
TransPoints the model was trained with (``model.trained_transpoints``, recorded by the
trainer and kept by checkpoints and ``save_pretrained``), clamped to the run's length; a
model without a record (fresh from ``zoo.build``) evaluates its schedule at the length.

An override is either explicit per-layer TransPoints or a schedule. A schedule is evaluated
at the training length when the model has a record (so the model's own schedule gives back
its training TransPoints), else at the run's length. An override that changes what a layer
runs raises one ``TransPointWarning`` naming both lists.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pydantic import ValidationError

from zoo.errors import ZooError, first_error_line
from zoo.registry import REGISTRIES
from zoo.schedule import TransPointRecord, TransPointSchedule, clamp, cyclic

ScheduleLike = str | Mapping[str, Any] | TransPointSchedule
_SCHEDULE_FORMS = 'give a registered name or {"name": NAME, "params": {...}}'


class TransPointWarning(UserWarning):
    """An inference run uses other TransPoints than the model was trained with."""


def parse_transpoints(text: str, n_layers: int) -> list[int]:
    """``"0,16,32"`` (commas, colons or spaces) -> one P per layer, cycled over the layers as
    the cyclic schedule does. A bad value is one ZooError naming ``transpoints``."""
    items = [item for item in text.replace(":", " ").replace(",", " ").split() if item]
    try:
        values = [int(item) for item in items]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise ZooError(f"transpoints: give integers >= 0 separated by commas (cycled over layers), got {text!r}")
    if len(values) > n_layers:  # the extra values would be dropped without a word
        raise ZooError(
            f"transpoints: {len(values)} values for a model of {n_layers} layers, got {text!r}; give at "
            f"most {n_layers} (a shorter list is cycled over the layers)"
        )
    return cyclic(values, n_layers)


def make_schedule(schedule: ScheduleLike) -> TransPointSchedule:
    """A schedule from a registered name, ``{"name": ..., "params": {...}}`` (or its JSON
    text), or an instance. Unknown names and bad params are one ZooError naming the field."""
    if isinstance(schedule, TransPointSchedule):
        return schedule
    if isinstance(schedule, str) and schedule.lstrip().startswith("{"):
        try:
            schedule = json.loads(schedule)
        except json.JSONDecodeError as exc:
            raise ZooError(f"schedule: not valid JSON ({exc.msg}); {_SCHEDULE_FORMS}") from None
    if isinstance(schedule, str):
        name, params = schedule, {}
    elif isinstance(schedule, Mapping) and set(schedule) <= {"name", "params"} and "name" in schedule:
        name, params = schedule["name"], schedule.get("params", {})
    else:
        raise ZooError(f"schedule: {_SCHEDULE_FORMS}, got {schedule!r}")
    entry = REGISTRIES["schedule"].get(str(name))
    try:
        return entry.obj(entry.params_model.model_validate(params))
    except ValidationError as exc:
        raise ZooError(f"schedule {name!r}: params.{first_error_line(exc, empty='')}") from None


def resolve_transpoints(
    model: torch.nn.Module,
    length: int,
    *,
    transpoints: Sequence[int] | str | None = None,
    schedule: ScheduleLike | None = None,
) -> list[int]:
    """Per-layer TransPoints for an inference run of ``length`` tokens (a cache's max_length
    or a forward's T): the model's default, or the override (see the module docstring)."""
    n_layers = model.n_layers
    if transpoints is not None and schedule is not None:
        raise ZooError("give transpoints or schedule, not both")
    if transpoints is None and schedule is None:
        return model.default_transpoints(length)
    record = getattr(model, "trained_transpoints", None)
    if schedule is not None:
        schedule = make_schedule(schedule)
        what = f"schedule {schedule!r}"
        if record is None:
            chosen = schedule.transpoints(n_layers, length)
        else:  # as if trained under it: the same length, and the record's rule for other lengths
            chosen = TransPointRecord(record.seq_len, tuple(schedule.transpoints(n_layers, record.seq_len))).at(length)
    elif isinstance(transpoints, str):
        chosen, what = parse_transpoints(transpoints, n_layers), "transpoints"
    else:
        chosen, what = [int(p) for p in transpoints], "transpoints"
        if len(chosen) != n_layers or min(chosen, default=0) < 0:
            raise ZooError(f"transpoints: give {n_layers} values >= 0 (one per layer), got {chosen}")
    if record is not None:
        trained = record.at(length)
        layers = [index for index, block in enumerate(model.blocks) if getattr(block, "uses_transpoint", True)]
        ours = clamp(chosen, length)
        if any(ours[index] != trained[index] for index in layers):
            warnings.warn(
                f"{what} gives TransPoints {[ours[i] for i in layers]} for {length} tokens; the model was "
                f"trained at {[trained[i] for i in layers]} (seq_len {record.seq_len})",
                TransPointWarning,
                stacklevel=3,
            )
    return chosen
