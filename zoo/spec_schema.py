"""The JSON Schema of a model spec, with every registered component's params in it.

``ModelSpec`` alone types a component's ``params`` as a free mapping (they are checked per
registry entry when a spec loads). This schema says, for each component slot, which names
are registered and which params each one takes: a union discriminated by ``name`` (each
variant pins ``name`` with ``const``; ``discriminator`` carries the mapping for tools that
read it, as OpenAPI does). A mixer's variant lists only the backend slots that mixer has,
so ``{name: mamba2, attention: ...}`` is refused here as it is by ``load_spec``.

It is built from the registries when asked for, so a plugin's components appear in it.
What it cannot say: checks that relate fields (a head dim that must divide ``d_model``,
the schedule a TransMamba layer requires); ``load_spec`` makes those.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from zoo.registry import AUTO, BACKEND_SLOTS, Entry, registry
from zoo.spec_patterns import MAX_LAYERS
from zoo.specs import ModelSpec

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_REF = "#/$defs/{model}"
_COMPONENT_KINDS = ("mixer", *BACKEND_SLOTS, "schedule")


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a model spec, per-component params included."""
    entries = {kind: registry(kind).entries() for kind in _COMPONENT_KINDS}
    defs, params_refs = _params_defs([e for kind in _COMPONENT_KINDS for e in entries[kind]])
    base = ModelSpec.model_json_schema(ref_template=_REF)
    base_defs = base.pop("$defs", {})
    for name in ("MLPSpec", "NormSpec", "CompileSpec"):
        defs[name] = base_defs[name]
    for kind in (*BACKEND_SLOTS, "schedule"):
        defs[f"{kind}_component"] = _union(kind, [_component_variant(e, params_refs) for e in entries[kind]])
    defs["mixer_component"] = _union("mixer", [_mixer_variant(e, params_refs) for e in entries["mixer"]])
    defs["Block"] = _block(base_defs["BlockSpec"])
    defs["LayerPattern"] = _layer_pattern()
    properties = dict(base["properties"])
    properties["layers"] = {
        "description": "one block per layer, or a pattern that expands to them",
        "anyOf": [
            {**properties["layers"], "items": {"$ref": _REF.format(model="Block")}},
            {"$ref": _REF.format(model="LayerPattern")},
        ],
    }
    properties["schedule"] = {
        "description": "TransPoint schedule; required when a layer's mixer uses one (transmamba)",
        "anyOf": [{"$ref": _REF.format(model="schedule_component")}, {"type": "null"}],
        "default": None,
    }
    return {
        "$schema": DIALECT,
        "title": "zoo model spec",
        "description": "A causal LM: embedding, per-layer blocks (mixer + MLP), final norm, LM head.",
        **{k: v for k, v in base.items() if k not in ("title", "description", "properties")},
        "properties": properties,
        "$defs": dict(sorted(defs.items())),
    }


def _params_defs(entries: list[Entry]) -> tuple[dict[str, Any], dict[type[BaseModel], dict[str, Any]]]:
    """One ``$defs`` entry per distinct Params model (pydantic names them apart on a clash)."""
    models = list(dict.fromkeys(e.params_model for e in entries))
    defs: dict[str, Any] = {}
    refs: dict[type[BaseModel], dict[str, Any]] = {}
    try:
        keys, top = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    except Exception:  # one plugin's odd Params must not take the whole schema down
        keys, top = {}, {}
    defs.update(top.get("$defs", {}))
    for model in models:
        ref = keys.get((model, "validation"))
        if ref is not None:
            refs[model] = ref
            continue
        try:  # the bulk call failed: this model alone, its defs merged (a clash keeps the first)
            schema = model.model_json_schema(ref_template=_REF)
        except Exception:
            refs[model] = {"type": "object", "description": f"{model.__qualname__}: no JSON Schema"}
            continue
        for name, sub in schema.pop("$defs", {}).items():
            defs.setdefault(name, sub)
        name = f"{model.__module__}.{model.__qualname__}".replace(".", "__")
        defs[name] = schema
        refs[model] = {"$ref": _REF.format(model=name)}
    return defs, refs


def _variant(entry: Entry, params_refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "object",
        "title": f"{entry.kind} {entry.name}",
        "description": entry.description or f"{entry.kind} {entry.name} ({entry.origin})",
        "properties": {"name": {"const": entry.name}, "params": params_refs[entry.params_model]},
        "required": ["name"],
        "additionalProperties": False,
    }


def _component_variant(entry: Entry, params_refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    return _variant(entry, params_refs)


def _mixer_variant(entry: Entry, params_refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    variant = _variant(entry, params_refs)
    slots: dict[str, str] = getattr(entry.obj, "backend_slots", {})
    for slot in BACKEND_SLOTS:
        if slot in slots:
            default = slots[slot]
            choices: list[dict[str, Any]] = [{"$ref": _REF.format(model=f"{slot}_component")}]
            if default in registry(slot):  # auto: the builder picks; params as the default's
                fallback = registry(slot).get(default).params_model
                choices.append(
                    {
                        "type": "object",
                        "title": f"{slot} auto",
                        "description": f"the {slot} backend preferred on the build's device, else {default}",
                        "properties": {"name": {"const": AUTO}, "params": params_refs[fallback]},
                        "required": ["name"],
                        "additionalProperties": False,
                    }
                )
            variant["properties"][slot] = {
                "description": f"{slot} backend (unset: {default})" if default else f"{slot} backend",
                "anyOf": [*choices, {"type": "null"}],
            }
    return variant


def _union(kind: str, variants: list[dict[str, Any]]) -> dict[str, Any]:
    names = [v["properties"]["name"]["const"] for v in variants]
    if not variants:  # a kind with no registered component: nothing validates
        return {"description": f"no {kind} is registered", "not": {}}
    return {
        "description": f"a registered {kind}: {', '.join(names)}",
        "oneOf": variants,
        "discriminator": {
            "propertyName": "name",
            "mapping": {n: f"#/$defs/{kind}_component/oneOf/{i}" for i, n in enumerate(names)},
        },
    }


def _block(block: dict[str, Any]) -> dict[str, Any]:
    block = {**block, "title": "Block", "properties": dict(block["properties"])}
    block["properties"]["mixer"] = {"$ref": _REF.format(model="mixer_component")}
    return block


def _layer_pattern() -> dict[str, Any]:
    block = {"$ref": _REF.format(model="Block")}
    index = {"type": "integer", "minimum": 0}
    return {
        "type": "object",
        "title": "LayerPattern",
        "description": "n_layers copies of block; with every/other, layer l with l % every == offset "
        "(offset defaults to every - 1) is other instead",
        "properties": {
            "n_layers": {"type": "integer", "minimum": 1, "maximum": MAX_LAYERS},
            "block": block,
            "every": {"type": "integer", "minimum": 1},
            "offset": index,
            "other": block,
        },
        "required": ["n_layers", "block"],
        "dependentRequired": {"every": ["other"], "other": ["every"], "offset": ["every"]},
        "additionalProperties": False,
    }
