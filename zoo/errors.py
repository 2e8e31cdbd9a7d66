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
        if len(errors) == 1:  # one mistake, one line
            path, msg = errors[0]
            super().__init__(f"invalid model spec{where}: {path or '<root>'}: {msg}")
            return
        lines = [f"invalid model spec{where} ({len(errors)} errors):"]
        lines += [f"  {path or '<root>'}: {msg}" for path, msg in errors]
        super().__init__("\n".join(lines))


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
