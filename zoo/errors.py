"""Exceptions with messages meant for people. The CLI prints them without a traceback."""

from __future__ import annotations

from typing import Any


class ZooError(Exception):
    """Base class of the zoo's user-facing errors."""


class SpecError(ZooError, ValueError):
    """A spec failed validation. ``errors`` holds ``(path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]], source: str | None = None) -> None:
        self.errors = errors
        self.source = source
        where = f" in {source}" if source else ""
        errors = _fold_layers(errors)
        if len(errors) == 1:  # one mistake, one line
            path, msg = errors[0]
            super().__init__(f"invalid model spec{where}: {path or '<root>'}: {msg}")
            return
        lines = [f"invalid model spec{where} ({len(errors)} errors):"]
        lines += [f"  {path or '<root>'}: {msg}" for path, msg in errors]
        super().__init__("\n".join(lines))


def _span(indices: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _layer_path(path: str) -> tuple[int | None, str]:
    """``layers.3.mixer.x`` -> (3, ``mixer.x``); any other path -> (None, path)."""
    head, _, rest = path.partition(".")
    index, _, tail = rest.partition(".")
    return (int(index), tail) if head == "layers" and index.isdigit() else (None, path)


def _fold_layers(errors: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One line for a mistake every layer repeats: ``layers.0.x: m`` .. ``layers.5.x: m``
    become ``layers.0-5.x: m``, at the first one's place (in the message; ``SpecError.errors``
    keeps each)."""
    layers: dict[tuple[str, str], list[int]] = {}
    for path, msg in errors:
        index, tail = _layer_path(path)
        if index is not None:
            layers.setdefault((tail, msg), []).append(index)
    out = []
    for path, msg in errors:
        index, tail = _layer_path(path)
        if index is None:
            out.append((path, msg))
        elif (tail, msg) in layers:  # the group's first error: the whole group, once
            out.append((f"layers.{_span(sorted(layers.pop((tail, msg))))}" + (f".{tail}" if tail else ""), msg))
    return out


class BackendUnsupportedError(ZooError, ValueError):
    """A chosen backend cannot run the spec's shapes here; the message is the backend's reason."""


class PluginError(ZooError):
    """A plugin failed to load."""


class CheckpointError(ZooError):
    """A checkpoint is missing, truncated or corrupted."""


def first_error_line(exc: Any, empty: str = "params") -> str:
    """``field.path: message`` of a pydantic ``ValidationError``'s first error (``empty`` where
    the error has no path): the one line a bad ``params`` dict is reported with."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or empty
    return f"{where}: {error['msg']}"
