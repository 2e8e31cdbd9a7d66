"""Name -> component registries, one generic implementation, one instance per kind.

Every registered component is a class (or, for presets, a function) that may carry a
pydantic ``Params`` model; the spec validator checks a spec's ``params`` against it.
A component says whether it can run here with ``is_available() -> (ok, reason)``.

The registry knows nothing of what fills it. A loader installed with ``set_loader`` runs
before every read (it must be cheap after its first call): the top package ``zoo`` installs
``zoo.plugins.autoload``, which imports the core's components and then the ``zoo.plugins``
entry points. So ``import zoo`` stays cheap, a broken plugin never breaks the core, and
this module imports nothing of the zoo (it sits at the bottom of the import floors).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

# The backend slots of a mixer, one registry kind each: the one list that specs, the builder,
# the CLI's --backend SLOT=NAME, the conformance kit and `zoo list` read.
BACKEND_SLOTS = ("attention", "ssm", "converter", "conv", "norm")
KINDS = ("mixer", *BACKEND_SLOTS, "schedule", "preset")


class RegistryError(KeyError):
    """Unknown or duplicate registry name. ``str()`` is the readable message."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NoParams(BaseModel):
    """Params model for components that take no options."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# The backend name that lets the builder choose: the first registered backend preferred on the
# build's device that is available and supports the layer, else the mixer's default.
AUTO = "auto"


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any
    origin: str
    preferred_on: tuple[str, ...] = ()  # device types where `auto` picks this backend

    @property
    def params_model(self) -> type[BaseModel]:
        return getattr(self.obj, "Params", NoParams)

    def availability(self) -> tuple[bool, str]:
        check = getattr(self.obj, "is_available", None)
        if check is None:
            return True, ""
        try:
            result = check()
        except Exception as exc:  # an availability probe must never crash a listing
            return False, f"availability check raised {type(exc).__name__}: {exc}"
        if isinstance(result, tuple):
            ok, reason = result
            return bool(ok), str(reason or "")
        return bool(result), ""

    def is_available(self) -> bool:
        return self.availability()[0]

    @property
    def description(self) -> str:
        doc = inspect.getdoc(self.obj) or ""
        return doc.strip().splitlines()[0] if doc else ""


# The distribution/package a registration is attributed to while a plugin loads.
_current_origin: list[str] = []

# Run before every registry read; installed by the top package (see the module docstring).
_loader: list[Callable[[], None]] = []


def set_loader(loader: Callable[[], None] | None) -> None:
    """Install the callable that fills the registries on first read (None removes it)."""
    _loader[:] = [] if loader is None else [loader]


def _origin_of(obj: Any) -> str:
    if _current_origin:
        return _current_origin[-1]
    module = getattr(obj, "__module__", None) or "?"
    return module.split(".")[0]


class Registry:
    """Registry for one kind of component.

    >>> SSM = Registry("ssm")
    >>> @SSM.register("scan")
    ... class Scan: ...
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, *, origin: str | None = None, preferred_on: tuple[str, ...] = ()
    ) -> Callable[[Any], Any]:
        """``preferred_on``: device types (``"cuda"``) where a backend slot set to ``auto``
        picks this backend, in registration order, when it is available and supports the layer."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} registry: name must be a non-empty string, got {name!r}")
        if name == AUTO:
            raise ValueError(f"{self.kind} registry: {AUTO!r} is reserved (it lets the builder choose)")

        def decorator(obj: Any) -> Any:
            where = origin or _origin_of(obj)
            if name in self._entries:
                old = self._entries[name]
                raise RegistryError(
                    f"{self.kind} {name!r} is already registered by {old.origin} "
                    f"({_qualname(old.obj)}); {where} ({_qualname(obj)}) tried to register it "
                    "again. Pick another name."
                )
            self._entries[name] = Entry(self.kind, name, obj, where, tuple(preferred_on))
            try:
                obj.registry_name = name
            except (AttributeError, TypeError):
                pass
            return obj

        return decorator

    def _discard(self, name: str, origin: str) -> None:
        """Remove ``name`` if ``origin`` registered it: rolls back a plugin that failed to load.

        Internal on purpose: no public API removes or replaces another origin's name.
        """
        entry = self._entries.get(name)
        if entry is not None and entry.origin == origin:
            del self._entries[name]

    def _ensure_plugins(self) -> None:
        for load in _loader:
            load()

    def get(self, name: str) -> Entry:
        self._ensure_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(self.unknown_message(name)) from None

    def unknown_message(self, name: Any) -> str:
        names = sorted(self._entries)
        close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return (
            f"unknown {self.kind} {name!r}.{hint} Registered {self.kind} names: "
            f"{', '.join(names) if names else '(none)'}"
        )

    def __contains__(self, name: object) -> bool:
        self._ensure_plugins()
        return name in self._entries

    def names(self) -> list[str]:
        self._ensure_plugins()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        self._ensure_plugins()
        return [self._entries[n] for n in sorted(self._entries)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


MIXER = Registry("mixer")
ATTENTION = Registry("attention")
SSM = Registry("ssm")
CONVERTER = Registry("converter")
CONV = Registry("conv")
NORM = Registry("norm")
SCHEDULE = Registry("schedule")
PRESET = Registry("preset")

REGISTRIES: dict[str, Registry] = {
    "mixer": MIXER,
    "attention": ATTENTION,
    "ssm": SSM,
    "converter": CONVERTER,
    "conv": CONV,
    "norm": NORM,
    "schedule": SCHEDULE,
    "preset": PRESET,
}


def registry(kind: str) -> Registry:
    try:
        return REGISTRIES[kind]
    except KeyError:
        raise RegistryError(f"unknown registry kind {kind!r}; kinds are: {', '.join(KINDS)}") from None
