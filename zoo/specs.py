"""Model specs: frozen pydantic models whose tree mirrors the module tree.

A ``ModelSpec`` is an explicit per-layer list of blocks (mixer + MLP), a TransPoint
schedule, norm/tying options and compile options. Component choices are ``{name, params}``
pairs resolved in the registries; ``params`` are validated against the component's own
``Params`` model, so an error names its full path, e.g.
``layers.3.mixer.attention.params.bogus: Extra inputs are not permitted``.

Entry points: ``load_spec(obj)`` (ModelSpec, dict, JSON/YAML path or text) raises
``SpecError`` listing every problem; ``ModelSpec.model_validate`` does the same checks
and raises pydantic's ``ValidationError``.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from zoo.errors import SpecError
from zoo.registry import AUTO, BACKEND_SLOTS
from zoo.spec_patterns import MAX_LAYERS, as_written, expand_pattern, pattern_kwargs, pattern_origins

# strict: a bool is not an int (``d_model: true`` is an error, not 1); allow_inf_nan: no
# field takes an infinite or NaN float. Component Params models use the same two options.
_FROZEN = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
MAX_NAME_LENGTH = 200
# Deeper than any real spec (a spec is ~6 levels); checked before parsing and validating,
# so a pathological input is a SpecError instead of a RecursionError.
MAX_DEPTH = 64
# torch.compile backends that need no registry look-up (the rest: torch._dynamo.list_backends).
_BUILTIN_COMPILE_BACKENDS = ("inductor", "eager", "aot_eager", "cudagraphs")


def check_name(value: str | None) -> str | None:
    """A user-given name: printable characters only, at most MAX_NAME_LENGTH of them."""
    if value is not None and (not value.isprintable() or len(value) > MAX_NAME_LENGTH):
        raise ValueError(f"a name must be printable characters only, at most {MAX_NAME_LENGTH}; got {value[:80]!r}")
    return value


def compile_backends() -> list[str]:
    """The torch.compile backends registered in this process."""
    import torch._dynamo

    return sorted({*_BUILTIN_COMPILE_BACKENDS, *torch._dynamo.list_backends(exclude_tags=())})


class ComponentSpec(BaseModel):
    """A registered component by name, with its params (validated against its ``Params``)."""

    model_config = _FROZEN
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    _name = field_validator("name")(check_name)


class MixerSpec(BaseModel):
    """A sequence mixer and the backends it runs on (slots the mixer does not use must be unset)."""

    model_config = _FROZEN
    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    _name = field_validator("name")(check_name)
    attention: ComponentSpec | None = None
    ssm: ComponentSpec | None = None
    converter: ComponentSpec | None = None
    conv: ComponentSpec | None = None
    norm: ComponentSpec | None = None  # one field per name in zoo.registry.BACKEND_SLOTS


class MLPSpec(BaseModel):
    """Feed-forward block. ``d_ff=None`` means 8/3 * d_model rounded up to a multiple of 64."""

    model_config = _FROZEN
    kind: Literal["swiglu", "none"] = "swiglu"
    d_ff: int | None = Field(default=None, ge=1)
    bias: bool = False
    hidden: Literal["save", "recompute"] = Field(
        default="save",
        description="SwiGLU's hidden silu(gate) * up, which down's backward reads: 'save' keeps it "
        "from the forward; 'recompute' keeps only gate and up (kept anyway for the SwiGLU's own "
        "backward) and forms it again in the backward (torch.utils.checkpoint; under torch.compile "
        "it is not saved)",
    )


class BlockSpec(BaseModel):
    model_config = _FROZEN
    mixer: MixerSpec
    mlp: MLPSpec = Field(default_factory=MLPSpec)


class NormSpec(BaseModel):
    model_config = _FROZEN
    kind: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    eps: float = Field(default=1e-5, gt=0, lt=1)


class CompileSpec(BaseModel):
    """torch.compile options; ``zoo.build(compile=...)`` overrides ``enabled``."""

    model_config = _FROZEN
    enabled: bool = False
    fullgraph: bool = True
    backend: str = "inductor"
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] | None = None
    # None: dynamo's automatic dynamic shapes, except in a model with TransPoint layers, which
    # compiles one static graph per input shape (zoo.compile.spec_options)
    dynamic: bool | None = None

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value in _BUILTIN_COMPILE_BACKENDS:
            return value
        known = compile_backends()
        if value not in known:
            raise ValueError(f"unknown torch.compile backend {value[:80]!r}; registered: {', '.join(known)}")
        return value


class ModelSpec(BaseModel):
    """A causal language model: embedding, blocks, final norm, LM head."""

    model_config = _FROZEN
    name: str | None = None
    vocab_size: int = Field(ge=2, le=10_000_000)
    d_model: int = Field(ge=1, le=65_536)
    layers: list[BlockSpec] = Field(min_length=1, max_length=MAX_LAYERS)
    schedule: ComponentSpec | None = None
    norm: NormSpec = Field(default_factory=NormSpec)
    tie_embeddings: bool = True
    init_std: float = Field(default=0.02, gt=0, le=1)
    # Weight-init recipe (zoo.models.lm.CausalLM.reset_parameters; docs/training.md, "Init
    # recipes"): gpt2 (N(0, init_std), residual outputs / sqrt(2 L)), llama (HF Llama: every
    # Linear and the embedding N(0, init_std)), mamba (mamba_ssm: PyTorch's default Linear
    # init, embedding N(0, init_std), residual outputs / sqrt(residuals per block * L)).
    init: Literal["gpt2", "llama", "mamba"] = "gpt2"
    compile: CompileSpec = Field(default_factory=CompileSpec)

    _name = field_validator("name")(check_name)

    @field_validator("layers", mode="before")
    @classmethod
    def _expand_pattern(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return expand_pattern(**pattern_kwargs(value))
        return value

    @model_validator(mode="after")
    def _check_registries(self, info: ValidationInfo) -> ModelSpec:
        if info.context and info.context.get("skip_registry"):
            return self
        errors = registry_errors(self)
        if errors:
            raise ValueError("\n".join(f"{path}: {msg}" for path, msg in errors))
        return self

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def mixer_names(self) -> list[str]:
        return [block.mixer.name for block in self.layers]

    def to_json(self, indent: int | None = 2) -> str:
        return self.model_dump_json(indent=indent, exclude_defaults=False)


# ----------------------------------------------------------------------------- registry checks


def _check_component(
    kind: str, spec: ComponentSpec | MixerSpec, path: str, errors: list[tuple[str, str]]
) -> Any | None:
    """Resolve ``spec.name`` in the ``kind`` registry and validate its params. Returns the entry."""
    from zoo.registry import RegistryError, registry

    try:
        entry = registry(kind).get(spec.name)
    except RegistryError as exc:
        errors.append((f"{path}.name", str(exc)))
        return None
    try:
        entry.params_model.model_validate(spec.params)
    except ValidationError as exc:
        takes = (f"{kind} {spec.name!r}", list(entry.params_model.model_fields))
        errors.extend(_pydantic_errors(exc, prefix=f"{path}.params", takes=takes))
        return None
    return entry


def registry_errors(spec: ModelSpec) -> list[tuple[str, str]]:
    """Every problem found resolving the spec's components in the registries."""
    errors: list[tuple[str, str]] = []
    uses_schedule = False
    for index, block in enumerate(spec.layers):
        path = f"layers.{index}.mixer"
        entry = _check_component("mixer", block.mixer, path, errors)
        if entry is None:
            continue
        mixer_cls = entry.obj
        slots: dict[str, str] = getattr(mixer_cls, "backend_slots", {})
        uses_schedule |= bool(getattr(mixer_cls, "uses_schedule", False))
        for slot in BACKEND_SLOTS:
            chosen = getattr(block.mixer, slot)
            if chosen is None:
                continue
            if slot not in slots:
                used = ", ".join(slots) or "none"
                errors.append(
                    (
                        f"{path}.{slot}",
                        f"the {block.mixer.name!r} mixer takes no {slot} backend "
                        f"(its backend slots: {used}); remove this field",
                    )
                )
                continue
            if chosen.name == AUTO:  # its params must suit the mixer's default backend (the fallback)
                chosen = chosen.model_copy(update={"name": slots[slot]})
            _check_component(slot, chosen, f"{path}.{slot}", errors)
        check = getattr(mixer_cls, "check_spec", None)
        if check is not None and not any(p.startswith(f"{path}.") for p, _ in errors):
            params = entry.params_model.model_validate(block.mixer.params)
            for sub, msg in check(spec.d_model, params):
                errors.append((f"{path}.params.{sub}" if sub else f"{path}.params", msg))
    if spec.schedule is not None:
        _check_component("schedule", spec.schedule, "schedule", errors)
    elif uses_schedule:
        errors.append(
            (
                "schedule",
                "required: a layer uses the transmamba mixer; set e.g. "
                "{'name': 'v9', 'params': {'relative': true}} or {'name': 'constant', 'params': {'fraction': 0.5}}",
            )
        )
    return errors


def _loc_part(part: Any) -> str:
    text = str(part)
    return text if text.isprintable() and len(text) <= MAX_NAME_LENGTH else repr(text[:80])


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value[:40]!r} (numbers and booleans go unquoted)"
    return f"{type(value).__name__} {repr(value)[:40]}"


def _pydantic_errors(
    exc: ValidationError, prefix: str = "", takes: tuple[str, list[str]] | None = None
) -> list[tuple[str, str]]:
    """(path, message) per error; ``takes`` (component, its param names) words an unknown param's error."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(_loc_part(part) for part in err.get("loc", ()))
        path = ".".join(p for p in (prefix, loc) if p)
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif str(err.get("type", "")).endswith("_type") and "input" in err:  # strict: say what came instead
            msg = f"{msg}, got {_describe(err['input'])}"
        elif err.get("type") == "extra_forbidden" and takes:
            close = difflib.get_close_matches(str(loc.rsplit(".", 1)[-1]), takes[1], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            msg = f"unknown param; {hint}{takes[0]} takes: {', '.join(takes[1]) or 'no params'}"
        out.append((path, msg))
    return out


# ----------------------------------------------------------------------------- loading


def _flow_depth(text: str) -> int:
    """Deepest bracket nesting of JSON/YAML flow text (a cheap bound, brackets in strings count too)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def check_depth(obj: Any, source: str | None = None) -> None:
    """Raise SpecError if ``obj`` nests dicts/lists deeper than MAX_DEPTH (iteratively: no recursion)."""
    stack = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SpecError([("", f"the spec nests deeper than {MAX_DEPTH} levels")], source)
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend((value, depth + 1) for value in node)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _yaml_loader() -> type:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses a mapping with a repeated key (plain YAML keeps the last)."""

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                except TypeError:  # an unhashable key: the base class reports it
                    break
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def _read_text_spec(text: str, source: str) -> Any:
    if _flow_depth(text) > MAX_DEPTH:
        raise SpecError([("", f"the spec nests deeper than {MAX_DEPTH} levels")], source)
    stripped = text.lstrip()
    if stripped.startswith("{") or stripped.startswith("["):
        try:
            return json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except (json.JSONDecodeError, ValueError, RecursionError) as exc:
            raise SpecError([("", f"invalid JSON: {exc}")], source) from None
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a core dependency
        raise SpecError([("", "YAML specs need pyyaml: pip install pyyaml")], source) from None
    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError) as exc:
        raise SpecError([("", f"invalid YAML: {exc}")], source) from None


def load_spec(obj: ModelSpec | dict[str, Any] | str | Path, *, source: str | None = None) -> ModelSpec:
    """Validate ``obj`` into a ``ModelSpec`` or raise ``SpecError`` naming every bad field.

    ``obj`` may be a ``ModelSpec``, a dict, a path to a .json/.yaml/.yml file, or JSON/YAML text.
    """
    if isinstance(obj, ModelSpec):
        return obj
    if isinstance(obj, Path) or (isinstance(obj, str) and "\n" not in obj and obj.endswith((".json", ".yaml", ".yml"))):
        path = Path(obj)
        if not path.is_file():
            raise SpecError([("", f"spec file not found: {path}")], str(path))
        source = source or str(path)
        obj = _read_text_spec(path.read_text(), source)
    elif isinstance(obj, str):
        obj = _read_text_spec(obj, source or "<text>")
    if not isinstance(obj, dict):
        raise SpecError([("", f"a model spec must be a mapping, got {type(obj).__name__}")], source)
    check_depth(obj, source)
    origins = pattern_origins(obj.get("layers"))
    try:
        spec = ModelSpec.model_validate(obj, context={"skip_registry": True})
    except ValidationError as exc:
        raise SpecError(as_written(_pydantic_errors(exc), origins), source) from None
    errors = as_written(registry_errors(spec), origins)
    if errors:
        raise SpecError(errors, source)
    return spec
