"""zoo: a torch.compile-first model zoo for hybrid attention / state-space LMs (TransMamba).

import zoo
model = zoo.build("transmamba-tiny")        # preset, spec file, dict or ModelSpec
zoo.list("attention")                       # registered backends and availability
"""

from __future__ import annotations

from typing import Any

from zoo import plugins as _plugins
from zoo import registry as _registry
from zoo.builder import build, describe, resolve_spec
from zoo.errors import BackendUnsupportedError, CheckpointError, PluginError, SpecError, ZooError
from zoo.registry import KINDS, registry
from zoo.specs import ModelSpec, load_spec
from zoo.version import __version__ as __version__

# The registries fill themselves on first read: the core's components, then the plugins.
# Installed here, at the top, so that zoo.registry (the bottom floor) imports no component.
_registry.set_loader(_plugins.autoload)


__all__ = [
    "BackendUnsupportedError",
    "CheckpointError",
    "ModelSpec",
    "PluginError",
    "SpecError",
    "ZooError",
    "build",
    "describe",
    "from_pretrained",
    "generate",
    "list",
    "load",
    "load_spec",
    "registry",
    "resolve_spec",
]


def list(kind: str | None = None) -> list[dict[str, Any]]:  # noqa: A001 - the documented API name
    """Rows of (kind, name, origin, available, reason) for one kind or all."""
    kinds = KINDS if kind is None else (kind,)
    rows = []
    for k in kinds:
        for entry in registry(k).entries():
            ok, reason = entry.availability()
            rows.append(
                {
                    "kind": k,
                    "name": entry.name,
                    "origin": entry.origin,
                    "available": ok,
                    "reason": reason,
                    "description": entry.description,
                }
            )
    return rows


def load(path, **kwargs):
    """Load a checkpoint directory: the model with its spec, in eval mode (see zoo.checkpoint)."""
    from zoo.checkpoint import load as _load

    return _load(path, **kwargs)


def from_pretrained(directory, **kwargs):
    """(model, tokenizer) from a ``model.save_pretrained`` directory, the model in eval mode (see zoo.hf)."""
    from zoo.hf import from_pretrained as _from_pretrained

    return _from_pretrained(directory, **kwargs)


def generate(model, input_ids, max_new_tokens: int, **kwargs):
    """Sample continuations with a cache (see zoo.inference.generate)."""
    from zoo.inference import generate as _generate

    return _generate(model, input_ids, max_new_tokens, **kwargs)
