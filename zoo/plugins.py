"""Plugin discovery through the ``zoo.plugins`` entry-point group.

A plugin is a distribution that declares, in its pyproject.toml::

    [project.entry-points."zoo.plugins"]
    my_backends = "my_package.zoo_backends"

Loading imports the module (its ``@ATTENTION.register(...)`` decorators run); if the
entry point names a callable instead, it is called. The zoo's own ``zoo_plugins`` and
``schedules`` packages are loaded exactly this way.

Autoload happens on first registry access. ``ZOO_DISABLE_PLUGIN_AUTOLOAD=1`` turns it
off; ``load_plugins()`` can then be called explicitly. A plugin that fails to import
is reported (warning + ``failed_plugins()``) by name with its error; the others load.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
import warnings
from dataclasses import dataclass

from zoo.registry import _current_origin

GROUP = "zoo.plugins"
DISABLE_ENV = "ZOO_DISABLE_PLUGIN_AUTOLOAD"

log = logging.getLogger("zoo.plugins")


@dataclass(frozen=True)
class PluginStatus:
    name: str
    value: str
    distribution: str
    loaded: bool
    error: str = ""


_lock = threading.RLock()
_state: dict[str, object] = {"done": False, "loading": False}
_status: dict[str, PluginStatus] = {}


def autoload_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def load_core() -> None:
    """Import the zoo's built-in components (backends, mixers, presets). Always on."""
    if _state.get("core"):
        return
    import zoo.backends  # noqa: F401
    import zoo.layers.mixers  # noqa: F401
    import zoo.models.presets  # noqa: F401

    _state["core"] = True


def autoload() -> None:
    """Load the core, then all plugins once unless autoload is disabled. Cheap afterwards."""
    load_core()
    if _state["done"] or _state["loading"] or autoload_disabled():
        return
    load_plugins()


def load_plugins(names: list[str] | None = None) -> dict[str, PluginStatus]:
    """Load the ``zoo.plugins`` entry points (all, or those named). Returns their status."""
    with _lock:
        if _state["loading"]:
            return dict(_status)
        _state["loading"] = True
        try:
            load_core()
            for ep in importlib.metadata.entry_points(group=GROUP):
                if names is not None and ep.name not in names:
                    continue
                if ep.name in _status and _status[ep.name].loaded:
                    continue
                _status[ep.name] = _load_one(ep)
            if names is None:
                _state["done"] = True
        finally:
            _state["loading"] = False
    return dict(_status)


def _load_one(ep: importlib.metadata.EntryPoint) -> PluginStatus:
    dist = ep.dist.name if getattr(ep, "dist", None) is not None else "?"
    _current_origin.append(f"{dist}:{ep.name}" if dist != "?" else ep.name)
    try:
        obj = ep.load()
        if callable(obj) and not isinstance(obj, type):
            obj()
    except Exception as exc:  # a broken plugin must not break the others
        message = f"{type(exc).__name__}: {exc}"
        warnings.warn(
            f"zoo plugin {ep.name!r} ({ep.value}, from {dist}) failed to load: {message}",
            RuntimeWarning,
            stacklevel=3,
        )
        return PluginStatus(ep.name, ep.value, dist, False, message)
    finally:
        _current_origin.pop()
    log.debug("loaded zoo plugin %s from %s", ep.name, dist)
    return PluginStatus(ep.name, ep.value, dist, True)


def plugin_status() -> dict[str, PluginStatus]:
    autoload()
    return dict(_status)


def failed_plugins() -> dict[str, str]:
    return {name: s.error for name, s in plugin_status().items() if not s.loaded}
