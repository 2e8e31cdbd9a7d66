"""Memory estimates checked before allocating: a model's weights, an inference cache.

A spec may ask for d_model 65536 and a 10M vocabulary, a generate call for a billion new
tokens; allocating first and failing later means minutes of swapping or an
out-of-memory kill. Each estimate here is exact for what it counts (built or allocated on
the ``meta`` device, which allocates nothing) and is compared with what the target device
has free; ``allow_large=True`` (``--allow-large``) skips the refusal.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import torch

from zoo.errors import ZooError


class MemoryLimitError(ZooError):
    """An allocation would not fit the device; the message gives the figure and the limit."""


def format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def available_bytes(device: torch.device | str) -> int | None:
    """Free memory of ``device`` in bytes (None: unknown, or no limit, as on ``meta``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def tensor_bytes(obj: Any) -> int:
    """Bytes of every distinct tensor reachable from ``obj`` (dataclasses, lists, dicts, attributes)."""
    seen: set[int] = set()
    total = 0
    stack = [obj]
    while stack:
        node = stack.pop()
        if node is None or isinstance(node, (int, float, str, bool, torch.dtype, torch.device)) or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, torch.Tensor):
            total += node.numel() * node.element_size()
        elif isinstance(node, torch.nn.Module):
            stack.extend(node.parameters())
            stack.extend(node.buffers())
        elif isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple, set)):
            stack.extend(node)
        elif dataclasses.is_dataclass(node):
            stack.extend(getattr(node, f.name) for f in dataclasses.fields(node))
        elif hasattr(node, "__dict__"):
            stack.extend(vars(node).values())
    return total


def check_fits(what: str, need: int, device: torch.device | str, *, allow_large: bool = False) -> None:
    """Raise MemoryLimitError when ``need`` bytes exceed what ``device`` has free."""
    if allow_large:
        return
    free = available_bytes(device)
    if free is not None and need > free:
        raise MemoryLimitError(
            f"{what} needs about {format_bytes(need)}, {torch.device(device)} has {format_bytes(free)} available; "
            "pass allow_large=True (--allow-large on the command line) to try anyway"
        )


def cache_bytes(
    model: torch.nn.Module, batch_size: int, max_length: int, *, transpoints: Sequence[int] | None = None
) -> int:
    """Bytes of ``model.allocate_cache(batch_size, max_length, transpoints=...)``, allocated on
    ``meta`` to count it (a TransMamba layer's attention cache holds its P positions)."""
    kwargs = {} if transpoints is None else {"transpoints": transpoints}
    cache = model.allocate_cache(batch_size, max_length, device="meta", **kwargs)
    return tensor_bytes(cache)
