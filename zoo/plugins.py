"""Plugin discovery through the ``zoo.plugins`` entry-point group.

A plugin is a distribution that declares, in its pyproject.toml::

    [project.entry-points."zoo.plugins"]
    my_backends = "my_package.zoo_backends"

Loading imports the module (its ``@ATTENTION.register(...)`` decorators run); if the
entry point names a callable instead, it is called. The zoo's own ``zoo_plugins`` are
loaded exactly this way.

The core (backends, mixers, presets and the ``schedules`` package) is not a plugin: it
loads on the first registry read whatever the environment says, so every preset builds
with plugins off. An entry point that names a core module is skipped (a stale install
may still list one), so nothing registers twice.

Autoload happens on first registry access: the top package ``zoo`` installs ``autoload``
as the registry's loader (``zoo.registry.set_loader``), so the registry never imports this
module. ``ZOO_DISABLE_PLUGIN_AUTOLOAD=1`` turns plugin loading off; ``load_plugins()`` can
then be called explicitly. A plugin that fails to import (any exception, ``sys.exit``
included; Ctrl-C still stops) is reported (warning + ``failed_plugins()``) by name with its
error, whatever it registered before failing is removed, and the others load.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
import warnings
from dataclasses import dataclass

from zoo.registry import REGISTRIES, _current_origin

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


# Packages whose registrations are the core's: imported by ``load_core``, never as plugins.
CORE_MODULES = ("zoo", "schedules")


def load_core() -> None:
    """Import the zoo's built-in components (backends, mixers, presets, schedules). Always on."""
    if _state.get("core") or _state.get("core_loading"):
        return
    _state["core_loading"] = True
    _current_origin.append("zoo")
    try:
        import schedules  # noqa: F401  (the core's TransPoint policies, a top-level package by design)
        import zoo.backends  # noqa: F401
        import zoo.layers.mixers  # noqa: F401
        import zoo.models.presets  # noqa: F401
    finally:
        _current_origin.pop()
        _state["core_loading"] = False
    _state["core"] = True


def _is_core(ep: importlib.metadata.EntryPoint) -> bool:
    return ep.value.split(":")[0].split(".")[0] in CORE_MODULES


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
                if _is_core(ep):  # already imported by load_core: loading it again would be a no-op at best
                    log.debug("zoo.plugins entry point %s names core module %s; skipped", ep.name, ep.value)
                    continue
                _status[ep.name] = _load_one(ep)
            if names is None:
                _state["done"] = True
        finally:
            _state["loading"] = False
    return dict(_status)


def _registered() -> set[tuple[str, str, str]]:
    """(kind, name, origin) of every registration now present (read without the loader)."""
    return {(kind, e.name, e.origin) for kind, reg in REGISTRIES.items() for e in reg._entries.values()}


def _load_one(ep: importlib.metadata.EntryPoint) -> PluginStatus:
    dist = ep.dist.name if getattr(ep, "dist", None) is not None else "?"
    _current_origin.append(f"{dist}:{ep.name}" if dist != "?" else ep.name)
    before = _registered()
    try:
        obj = ep.load()
        if callable(obj) and not isinstance(obj, type):
            obj()
    except KeyboardInterrupt:  # Ctrl-C stops the program, as anywhere else
        raise
    except BaseException as exc:  # a broken plugin (even one calling sys.exit) must not break the others
        # A half-loaded plugin would leave registrations that point at code that never finished
        # importing: remove what it added, so its names are unknown rather than broken.
        for kind, name, origin in _registered() - before:
            REGISTRIES[kind]._discard(name, origin)
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


def _reset_for_tests() -> None:
    """Forget what was loaded (tests that install plugins at run time use this)."""
    with _lock:
        _state["done"] = False
        _status.clear()
