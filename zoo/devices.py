"""Device names from people: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``meta``, checked to exist here.

``parse_device`` turns a name into a ``torch.device`` or raises ``DeviceError``, one line
naming the value and the fix, before anything is built or allocated (torch itself would
fail later, deep in a build, with "Torch not compiled with CUDA enabled").
"""

from __future__ import annotations

import torch

from zoo.errors import ZooError

KNOWN = "auto, cpu, cuda or cuda:N"


class DeviceError(ZooError, ValueError):
    """A device name is malformed or names a device this machine does not have."""


def _why_no_cuda() -> str:
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"


def parse_device(value: str | torch.device | None, *, flag: str | None = None) -> torch.device:
    """``value`` as a ``torch.device`` that exists on this machine; ``None``/``"auto"``: cuda if present.

    ``flag`` is how the caller spells the option in messages (``"--device"`` on the command
    line); without it the messages speak of the ``device=`` argument.
    """
    if value is None or value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    label = f"{flag} {value}" if flag else f"device={str(value)!r}"
    try:
        device = value if isinstance(value, torch.device) else torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        shown = str(value)[:80]
        raise DeviceError(f"{flag + ': ' if flag else ''}unknown device {shown!r}; use {KNOWN}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            fix = f"use {flag} cpu or {flag} auto" if flag else "use device='cpu' (or 'auto': cuda when present)"
            raise DeviceError(f"{label}: CUDA is not available on this machine ({_why_no_cuda()}); {fix}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            have = "cuda:0" if count == 1 else f"cuda:0 .. cuda:{count - 1}"
            raise DeviceError(f"{label}: this machine has {count} CUDA device{'s' if count > 1 else ''} ({have})")
    elif device.type == "mps" and not (torch.backends.mps.is_available()):
        raise DeviceError(f"{label}: MPS is not available on this machine; use cpu or auto")
    return device
