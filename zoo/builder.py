"""Spec -> model. Resolves every name in its registry once, checks backend support, builds.

``build(spec | dict | path | preset_name, *, device=None, dtype=None, compile=None)``:
1. resolve the argument to a validated ``ModelSpec`` (presets by name, files by path);
2. for each layer, build the chosen backends from their params (a slot named ``auto`` takes
   the backend preferred on the device, see ``choose_backend``) and ask each
   ``supports(device=, dtype=, **shapes)``; a refusal raises ``BackendUnsupportedError``
   with the backend's own reason and the layer path;
3. construct the ``CausalLM`` on ``device`` (``"meta"`` allocates nothing);
4. optionally compile it in place with the spec's compile options, under the policy of
   ``zoo.compile`` (state_dict keys stay unprefixed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from zoo.compile import compile_in_place, spec_options
from zoo.devices import parse_device
from zoo.errors import BackendUnsupportedError, SpecError
from zoo.registry import AUTO, BACKEND_SLOTS, PRESET, REGISTRIES, RegistryError
from zoo.specs import ModelSpec, load_spec


def resolve_spec(obj: ModelSpec | dict[str, Any] | str | Path) -> ModelSpec:
    """A ModelSpec from a spec, dict, file path, JSON/YAML text or preset name."""
    if (
        isinstance(obj, str)
        and "\n" not in obj
        and not obj.endswith((".json", ".yaml", ".yml"))
        and not obj.lstrip().startswith("{")
    ):
        if obj in PRESET:
            return load_spec(PRESET.get(obj).obj(), source=f"preset {obj!r}")
        if Path(obj).is_file():
            return load_spec(Path(obj))
        raise SpecError([("", PRESET.unknown_message(obj) + " (or give a .json/.yaml spec file)")])
    return load_spec(obj)


@dataclass
class LayerPlan:
    index: int
    mixer: str
    mixer_params: Any
    backends: dict[str, Any] = field(default_factory=dict)


def plan_layers(
    spec: ModelSpec,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    requires_grad: bool = True,
) -> list[LayerPlan]:
    """Resolve each layer's mixer class, params and backend objects (no tensors). A slot set
    to ``auto`` gets the backend ``choose_backend`` picks for ``device`` (default: the CPU)."""
    device = device or torch.device("cpu")
    plans = []
    for index, block in enumerate(spec.layers):
        mixer_cls = REGISTRIES["mixer"].get(block.mixer.name).obj
        params = mixer_cls.Params.model_validate(block.mixer.params)
        shapes = mixer_cls.backend_shapes(spec.d_model, params)
        backends = {}
        for slot, default in getattr(mixer_cls, "backend_slots", {}).items():
            chosen = getattr(block.mixer, slot) or None
            name = chosen.name if chosen else default
            backend_params = chosen.params if chosen else {}
            if name == AUTO:
                slot_shapes = dict(shapes.get(slot, {}), requires_grad=int(requires_grad))
                backends[slot] = choose_backend(slot, default, backend_params, device, dtype, slot_shapes)
                continue
            entry = REGISTRIES[slot].get(name)
            backends[slot] = entry.obj(entry.params_model.model_validate(backend_params))
        plans.append(LayerPlan(index, block.mixer.name, params, backends))
    return plans


def choose_backend(
    slot: str,
    default: str,
    params: dict[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    shapes: dict[str, int],
) -> Any:
    """What ``auto`` means: the first backend registered as preferred on ``device.type`` that
    is available, takes ``params`` and supports the layer's shapes and ``dtype`` there; else the
    mixer's ``default`` (the portable one). Decided once, at build: forward() never looks."""
    for entry in REGISTRIES[slot].entries():
        if device.type not in entry.preferred_on or not entry.is_available():
            continue
        try:
            backend = entry.obj(entry.params_model.model_validate(params))
        except ValidationError:
            continue
        if backend.supports(device=device, dtype=dtype, **shapes)[0]:
            return backend
    entry = REGISTRIES[slot].get(default)
    return entry.obj(entry.params_model.model_validate(params))


def check_support(
    spec: ModelSpec,
    plans: list[LayerPlan],
    device: torch.device,
    dtype: torch.dtype,
    *,
    requires_grad: bool = True,
    dry_run_on: torch.device | None = None,
) -> None:
    """Raise ``BackendUnsupportedError`` for the first backend that is unavailable or does not
    support its layer on ``device``; with ``dry_run_on``, also call each backend once there
    (``dry_run``)."""
    checked: set[tuple] = set()
    for plan in plans:
        mixer_cls = REGISTRIES["mixer"].get(plan.mixer).obj
        shapes_by_slot = mixer_cls.backend_shapes(spec.d_model, plan.mixer_params)
        for slot, backend in plan.backends.items():
            entry = REGISTRIES[slot].get(backend.registry_name)
            ok, reason = entry.availability()
            path = f"layers.{plan.index}.mixer.{slot}"
            if not ok:
                raise BackendUnsupportedError(
                    f"{path}: {slot} backend {entry.name!r} is not available here: {reason} "
                    f"(to use another: --backend {slot}=NAME on the CLI, backends={{{slot!r}: NAME}} in zoo.load; "
                    f"`zoo list` shows the {slot} backends)"
                )
            shapes = dict(shapes_by_slot.get(slot, {}), requires_grad=int(requires_grad))
            key = (slot, entry.name, repr(backend.params), tuple(sorted(shapes.items())))
            if key in checked:
                continue
            checked.add(key)
            device_for_check = torch.device("cpu") if device.type == "meta" else device
            ok, reason = backend.supports(device=device_for_check, dtype=dtype, **shapes)
            if not ok:
                raise BackendUnsupportedError(
                    f"{path}: {slot} backend {entry.name!r} does not support this layer on "
                    f"{device_for_check.type}/{str(dtype).removeprefix('torch.')}: {reason}"
                )
            if dry_run_on is not None and dry_run_on.type != "meta":
                dry_run(path, slot, entry.name, backend, shapes_by_slot.get(slot, {}), dry_run_on, dtype)


# Backends that passed a dry run in this process: (class, params, shapes, device, dtype).
# The test suite builds hundreds of models from a handful of configurations.
_dry_run_passed: set[tuple] = set()


def dry_run(
    path: str, slot: str, name: str, backend: Any, shapes: dict[str, int], device: torch.device, dtype: torch.dtype
) -> None:
    """Call ``backend`` once on tiny inputs (batch 1, 3 tokens) of the layer's head shape and
    check the output's shapes and dtypes against the slot's contract, so a plugin backend that
    returns the wrong thing is named at build instead of failing later inside the model."""
    key = (type(backend), repr(backend.params), tuple(sorted(shapes.items())), str(device), dtype)
    try:
        H, G, P, N = (shapes[k] for k in ("n_heads", "n_groups", "head_dim", "state_dim"))
    except KeyError:  # a mixer of a plugin with other shape keys: nothing to build inputs from
        return
    if key in _dry_run_passed:
        return
    # Deterministic inputs without touching the global random generator (builds must not shift it).
    gen = torch.Generator(device="cpu").manual_seed(0)

    def rand(*size: int, dtype: torch.dtype = dtype) -> torch.Tensor:
        return (torch.randn(*size, generator=gen) * 0.5).to(device=device, dtype=dtype)

    # dt, A and the states are fp32 (fp64 in an fp64 model) whatever the model dtype, as in the mixers.
    B, T, fp32 = 1, 3, torch.promote_types(dtype, torch.float32)
    dt = torch.full((B, T, H), 0.5, device=device, dtype=fp32)
    A = -torch.ones(H, device=device, dtype=fp32)
    expected: list[tuple[str, tuple[int, ...], torch.dtype]]
    try:
        with torch.no_grad():
            if slot == "attention":
                out = backend(rand(B, T, G, N), rand(B, T, G, N), rand(B, T, H, P), scale=N**-0.5, causal=True)
                outs, expected = [out], [("output", (B, T, H, P), dtype)]
            elif slot == "ssm":
                x, Bm, Cm = rand(B, T, H, P), rand(B, T, G, N), rand(B, T, G, N)
                out = backend(x, dt, A, Bm, Cm, return_final_state=True)
                outs = list(out) if isinstance(out, (tuple, list)) else [out]
                expected = [("y", (B, T, H, P), dtype), ("final state", (B, H, P, N), fp32)]
            elif slot == "converter":
                outs = [backend(rand(B, T, G, N), rand(B, T, H, P), dt, A)]
                expected = [("state", (B, H, P, N), fp32)]
            elif slot == "conv" and "channels" in shapes and "width" in shapes:
                C, W = shapes["channels"], shapes["width"]
                split = [C // 2, C - C // 2]
                outs = list(backend(rand(B, T, C), rand(C, W), rand(C), split_sizes=split))
                expected = [(f"part {i}", (B, T, c), dtype) for i, c in enumerate(split)]
            elif slot == "norm":
                D = H * P  # d_inner, normed in G groups
                outs = [backend(rand(B, T, D), rand(B, T, D), rand(D), n_groups=G, eps=1e-5)]
                expected = [("output", (B, T, D), dtype)]
            else:
                return
    except Exception as exc:
        raise BackendUnsupportedError(
            f"{path}: {slot} backend {name!r} failed a dry run on tiny inputs: {type(exc).__name__}: {exc}"
        ) from exc
    got = [(tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else (type(t).__name__, None) for t in outs]
    want = [(shape, dt_) for _, shape, dt_ in expected]
    if got != want:

        def show(items: list) -> str:
            return ", ".join(
                f"{list(s) if isinstance(s, tuple) else s} {str(d).removeprefix('torch.')}" for s, d in items
            )

        raise BackendUnsupportedError(
            f"{path}: {slot} backend {name!r} returned {show(got)}; the {slot} contract expects "
            f"{show(want)} ({', '.join(what for what, _, _ in expected)}) for these inputs"
        )
    _dry_run_passed.add(key)


def build_schedule(spec: ModelSpec):
    if spec.schedule is None:
        return None
    entry = REGISTRIES["schedule"].get(spec.schedule.name)
    return entry.obj(entry.params_model.model_validate(spec.schedule.params))


def build(
    spec: ModelSpec | dict[str, Any] | str | Path,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    compile: bool | None = None,
    requires_grad: bool = True,
    support_device: torch.device | str | None = None,
    allow_large: bool = False,
):
    """Build a ``CausalLM`` from a spec, dict, file, or preset name. See module docstring.

    ``requires_grad=False`` builds a model for inference: backends need not support a
    backward, and the parameters do not require gradients.
    ``support_device``: check the backends against this device instead of ``device`` (build
    on the CPU, where the initial weights do not depend on the GPU's random generator, for a
    model that will run on a GPU).
    ``allow_large``: build even when the weights exceed the device's free memory
    (``zoo.memory``; by default that is a ``MemoryLimitError`` before anything is allocated).
    """
    from zoo.models.lm import CausalLM

    spec = resolve_spec(spec)
    # a device this machine lacks is one line here, not an assertion deep inside torch
    device = parse_device(device) if device is not None else torch.device("cpu")
    dtype = dtype or torch.float32
    try:
        plans = plan_layers(
            spec, device=torch.device(support_device or device), dtype=dtype, requires_grad=requires_grad
        )
    except RegistryError as exc:  # validated specs resolve; this guards registry edits since
        raise SpecError([("", str(exc))]) from None
    # not parse_device: a support device is what the backends are checked for, it need not be here
    target = torch.device(support_device) if support_device is not None else device
    # The dry run calls the backends where the model is built, so only when that is the device
    # they are checked for (a model built on the CPU for a GPU skips it) and holds real tensors.
    same = target.type == device.type and (target.index or 0) == (device.index or 0)
    check_support(spec, plans, target, dtype, requires_grad=requires_grad, dry_run_on=device if same else None)
    if device.type != "meta" and not allow_large:
        from zoo.memory import check_fits

        check_fits(
            f"building {spec.name or 'the model'!r} ({str(dtype).removeprefix('torch.')})",
            model_bytes(spec, dtype, support_device=target),
            device,
        )
    with torch.device(device):
        mixers = []
        for plan in plans:
            mixer_cls = REGISTRIES["mixer"].get(plan.mixer).obj
            mixers.append(mixer_cls(spec.d_model, plan.mixer_params, backends=plan.backends, layer_idx=plan.index))
        model = CausalLM(spec, mixers, build_schedule(spec))
    if dtype != torch.float32:
        model = model.to(dtype=dtype)
    if not requires_grad:
        model.requires_grad_(False)
    enabled = spec.compile.enabled if compile is None else compile
    if enabled:
        from zoo.models.pretrained import uses_transpoints

        compile_in_place(
            model,
            what=f"model {spec.name or '(unnamed)'}",
            hint="compile=False to skip",
            **spec_options(spec.compile, static_lengths=uses_transpoints(model)),
        )
    return model


def describe(model, seq_len: int | None = None) -> str:
    """Per-layer plan (mixer, backends, TransPoint) and parameter counts, as text."""
    spec: ModelSpec = model.spec
    lines = [
        f"model {spec.name or '(unnamed)'}: vocab {spec.vocab_size}, d_model {spec.d_model}, "
        f"{len(spec.layers)} layers, schedule {model.schedule!r}"
    ]
    transpoints = model.transpoints_for(seq_len) if seq_len else None
    for index, block in enumerate(model.blocks):
        mixer = block.mixer
        backends = ", ".join(
            f"{slot}={getattr(mixer, slot).registry_name}" for slot in BACKEND_SLOTS if hasattr(mixer, slot)
        )
        n = sum(p.numel() for p in block.parameters())
        tp = f"  P={transpoints[index]}" if transpoints and block.uses_transpoint else ""
        lines.append(f"  layer {index:3d}  {spec.layers[index].mixer.name:<11} [{backends}]  {n:,} params{tp}")
    total = model.num_parameters()
    lines.append(
        f"total parameters: {total:,} ({total / 1e6:.2f}M; "
        f"{model.num_parameters(exclude_embeddings=True):,} without embeddings)"
    )
    return "\n".join(lines)


def model_bytes(spec: Any, dtype: torch.dtype = torch.float32, *, support_device: torch.device | str = "cpu") -> int:
    """Peak bytes of building ``spec`` in ``dtype``: built in fp32, then cast (both copies live).

    Counted on the meta device; backends are checked against ``support_device`` (where the
    model will run), and the count needs no backward."""
    meta = build(spec, device="meta", compile=False, requires_grad=False, support_device=support_device)
    numel = sum(t.numel() for t in {id(t): t for t in [*meta.parameters(), *meta.buffers()]}.values())
    float_bytes = numel * 4
    return float_bytes if dtype == torch.float32 else float_bytes + numel * torch.empty((), dtype=dtype).element_size()
