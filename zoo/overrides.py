"""Backend overrides: ``--backend SLOT=NAME[:KEY=VALUE,...]`` parsed, checked against the
backend's params, and applied to a spec (every layer whose mixer has that slot).

The command line, the trainer, the benchmarks and checkpoint loading share these, so an
override means the same everywhere: ``ssm=triton:states=recompute`` sets the ``ssm`` slot of
every SSD layer to the Triton backend with ``states: recompute``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from zoo.errors import ZooError, first_error_line
from zoo.registry import AUTO, BACKEND_SLOTS, REGISTRIES, RegistryError
from zoo.specs import load_spec


def split_backend_choice(choice: str) -> tuple[str, dict[str, Any]]:
    """A backend override's value: ``NAME`` or ``NAME:KEY=VALUE,KEY=VALUE`` (params of that
    backend; a VALUE reads as JSON where it can, so ``64`` is an int and ``true`` a bool, else
    as a string). ``"triton:states=recompute,chunk_size=64"`` -> ``("triton", {"states":
    "recompute", "chunk_size": 64})``."""
    name, _, rest = choice.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ZooError(
                f"backend {choice!r}: expected NAME or NAME:KEY=VALUE[,KEY=VALUE], e.g. triton:states=recompute"
            )
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value.strip()
    return name.strip(), params


def check_backend_params(slot: str, choice: str) -> None:
    """One line naming the override when its backend is unknown to the slot's registry or its
    params do not fit the backend (with the params it takes), before any layer is touched."""
    name, params = split_backend_choice(choice)
    if name == AUTO:
        return
    try:
        entry = REGISTRIES[slot].get(name)
    except RegistryError:
        known = ", ".join([AUTO, *REGISTRIES[slot].names()])
        raise ZooError(
            f"--backend {slot}={choice}: unknown {slot} backend {name!r}; choose one of {known} (zoo list {slot})"
        ) from None
    if not params:
        return
    try:
        entry.params_model.model_validate(params)
    except ValidationError as exc:
        takes = ", ".join(entry.params_model.model_fields) or "no params"
        raise ZooError(f"--backend {slot}={choice}: {first_error_line(exc)} ({name} takes: {takes})") from None


def parse_backend_overrides(items: list[str] | None) -> dict[str, str]:
    """``["ssm=triton", "attention=sdpa"]`` -> ``{"ssm": "triton", "attention": "sdpa"}``; a
    value may carry the backend's params (``ssm=triton:states=recompute``, see
    :func:`split_backend_choice`)."""
    overrides: dict[str, str] = {}
    for item in items or []:
        slot, sep, name = item.partition("=")
        slot, name = slot.strip(), name.strip()
        if not sep or not name or not split_backend_choice(name)[0]:
            raise ZooError(f"--backend {item!r}: expected SLOT=NAME, e.g. --backend ssm=triton")
        if slot not in BACKEND_SLOTS:
            raise ZooError(f"--backend {item!r}: unknown slot {slot!r}; the slots are {', '.join(BACKEND_SLOTS)}")
        if slot in overrides and overrides[slot] != name:
            raise ZooError(f"--backend: slot {slot!r} given twice ({overrides[slot]!r} and {name!r})")
        overrides[slot] = name
    return overrides


def spec_with_backends(
    spec: dict[str, Any], overrides: dict[str, str], *, strict: bool = False, label: str | None = None
) -> tuple[dict[str, Any], set[str]]:
    """The spec (a JSON dict) with every layer whose mixer has a backend slot in ``overrides``
    switched to the named backend, and the set of slots that applied to some layer.

    A layer's backend params are kept when the backend keeps its name and dropped (the new
    backend's defaults) when it changes: params of one backend do not carry to another.
    Params in the override (``triton:states=recompute``) are set on top.
    Slots a mixer does not have are left alone (a transformer has no ``ssm`` slot); with
    ``strict``, an override that no layer takes is an error.
    """
    unknown = sorted(set(overrides) - set(BACKEND_SLOTS))
    if unknown:
        raise ZooError(f"backend override: unknown slot {unknown[0]!r}; the slots are {', '.join(BACKEND_SLOTS)}")
    for slot, choice in overrides.items():
        check_backend_params(slot, choice)
    if isinstance(spec.get("layers"), dict):  # a layer pattern: expand it first
        spec = load_spec(spec).model_dump(mode="json")
    applied: set[str] = set()
    layers = []
    for layer in spec["layers"]:
        mixer = dict(layer["mixer"])
        slots = getattr(REGISTRIES["mixer"].get(mixer["name"]).obj, "backend_slots", {})
        for slot, choice in overrides.items():
            if slot not in slots:
                continue
            name, params = split_backend_choice(choice)
            current = mixer.get(slot) or {"name": slots[slot], "params": {}}
            kept = (current.get("params") or {}) if current["name"] == name else {}
            mixer[slot] = {"name": name, "params": {**kept, **params}}
            applied.add(slot)
        layers.append({**layer, "mixer": mixer})
    unused = sorted(set(overrides) - applied)
    if strict and unused:
        name = label or repr(spec.get("name") or "the model")
        slots = "that slot" if len(unused) == 1 else "those slots"
        raise ZooError(f"--backend {', '.join(unused)}: no layer of {name} has {slots}")
    return {**spec, "layers": layers}, applied


MLP_HIDDEN = ("save", "recompute")
SSD_GATE = ("save", "recompute")
SSD_IN_PROJ = ("split", "joined")


def _with_each_layer(spec: dict[str, Any], edit: Any) -> dict[str, Any]:
    """The spec (a JSON dict; a layer pattern is expanded first) with ``edit(layer)`` of each layer."""
    if isinstance(spec.get("layers"), dict):
        spec = load_spec(spec).model_dump(mode="json")
    return {**spec, "layers": [edit(layer) for layer in spec["layers"]]}


def spec_with_mlp_hidden(spec: dict[str, Any], hidden: str) -> dict[str, Any]:
    """The spec (a JSON dict) with every SwiGLU's ``hidden`` set (``save`` or ``recompute``;
    docs/training.md, "Memory"); layers without an MLP are left alone."""
    if hidden not in MLP_HIDDEN:
        raise ZooError(f"mlp hidden: expected one of {', '.join(MLP_HIDDEN)}, got {hidden!r}")

    def edit(layer: dict[str, Any]) -> dict[str, Any]:
        mlp = dict(layer.get("mlp") or {})
        if mlp.get("kind", "swiglu") == "swiglu":
            mlp["hidden"] = hidden
        return {**layer, "mlp": mlp}

    return _with_each_layer(spec, edit)


def _with_ssd_param(spec: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    """The spec with mixer param ``key`` set to ``value`` in every layer whose mixer's Params
    has that field (mamba2, transmamba, and any registered mixer with one)."""

    def edit(layer: dict[str, Any]) -> dict[str, Any]:
        mixer = layer["mixer"]
        params_class = getattr(REGISTRIES["mixer"].get(mixer["name"]).obj, "Params", None)
        if key not in getattr(params_class, "model_fields", {}):
            return layer
        return {**layer, "mixer": {**mixer, "params": {**(mixer.get("params") or {}), key: value}}}

    return _with_each_layer(spec, edit)


def spec_with_ssd_gate(spec: dict[str, Any], gate: str) -> dict[str, Any]:
    """The spec (a JSON dict) with the ``gate`` param set (``save`` or ``recompute``: z kept
    from in_proj, or formed again in the backward; docs/training.md, "Memory") in every layer
    whose mixer takes one (mamba2, transmamba, and any registered mixer whose Params has a
    ``gate`` field); other layers are left alone."""
    if gate not in SSD_GATE:
        raise ZooError(f"ssd gate: expected one of {', '.join(SSD_GATE)}, got {gate!r}")
    return _with_ssd_param(spec, "gate", gate)


def spec_with_ssd_in_proj(spec: dict[str, Any], in_proj: str) -> dict[str, Any]:
    """The spec with the SSD mixers' ``in_proj`` param set (``split``, the default: a matmul per
    part in training; ``joined``: one matmul, its gradients joined; docs/training.md) in every
    layer whose mixer takes one; other layers are left alone."""
    if in_proj not in SSD_IN_PROJ:
        raise ZooError(f"ssd in_proj: expected one of {', '.join(SSD_IN_PROJ)}, got {in_proj!r}")
    return _with_ssd_param(spec, "in_proj", in_proj)


def spec_with_recompute(
    spec: dict[str, Any], *, mlp_hidden: str | None = None, ssd_gate: str | None = None
) -> dict[str, Any]:
    """The spec with the training-memory opt-ins given (None leaves the spec's own):
    ``mlp_hidden`` for every SwiGLU, ``ssd_gate`` for every SSD mixer (docs/training.md,
    "Memory without checkpointing")."""
    if mlp_hidden is not None:
        spec = spec_with_mlp_hidden(spec, mlp_hidden)
    if ssd_gate is not None:
        spec = spec_with_ssd_gate(spec, ssd_gate)
    return spec
