"""Layer patterns: ``layers: {n_layers, block, every, offset, other}`` in a spec, expanded
to the explicit per-layer list that ``ModelSpec`` holds, and errors found in the expanded
list mapped back to the pattern's keys (the paths the user wrote)."""

from __future__ import annotations

from typing import Any

MAX_LAYERS = 4096


def pattern_kwargs(value: dict[str, Any]) -> dict[str, Any]:
    allowed = {"n_layers", "block", "every", "offset", "other"}
    extra = set(value) - allowed
    if extra:
        raise ValueError(f"layer pattern takes keys {sorted(allowed)}; unexpected {sorted(extra)}")
    if "n_layers" not in value or "block" not in value:
        raise ValueError("layer pattern needs 'n_layers' and 'block'")
    return value


def expand_pattern(
    n_layers: int,
    block: Any,
    every: int | None = None,
    offset: int | None = None,
    other: Any = None,
) -> list[Any]:
    """Expand a layer pattern into an explicit per-layer list.

    ``n_layers`` copies of ``block``; if ``every``/``other`` are given, every ``every``-th
    layer (layer l with ``l % every == offset``, ``offset`` defaulting to ``every - 1``)
    is ``other`` instead. E.g. a Jamba-like 1:7 hybrid::

        expand_pattern(16, mamba2_block, every=8, other=attention_block)
    """
    if not isinstance(n_layers, int) or isinstance(n_layers, bool) or not 1 <= n_layers <= MAX_LAYERS:
        raise ValueError(f"layer pattern: n_layers must be an integer in [1, {MAX_LAYERS}], got {n_layers!r}")
    if (every is None) != (other is None):
        raise ValueError("layer pattern: give both 'every' and 'other', or neither")
    if offset is not None and every is None:
        raise ValueError("layer pattern: 'offset' needs 'every' and 'other'")
    if every is not None and (not isinstance(every, int) or isinstance(every, bool) or every < 1):
        raise ValueError(f"layer pattern: every must be a positive integer, got {every!r}")
    if every is not None:
        offset = every - 1 if offset is None else offset
        if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < every:
            raise ValueError(f"layer pattern: offset must be an integer in [0, every), got {offset!r}")
    layers = []
    for index in range(n_layers):
        use_other = every is not None and index % every == offset
        layers.append(other if use_other else block)
    return layers


def pattern_origins(layers: Any) -> list[str] | None:
    """For a layer pattern, the key ('block' or 'other') that each expanded layer comes from."""
    if not isinstance(layers, dict):
        return None
    try:
        kwargs = pattern_kwargs(layers)
        return expand_pattern(**{**kwargs, "block": "block", "other": "other" if "other" in kwargs else None})
    except (ValueError, TypeError):  # the pattern itself is wrong: validation reports that at 'layers'
        return None


def as_written(errors: list[tuple[str, str]], origins: list[str] | None) -> list[tuple[str, str]]:
    """Errors at the paths the user wrote: ``layers.5.mixer`` of a pattern is ``layers.block.mixer``,
    reported once, not once per layer that the pattern expands to."""
    if origins is None:
        return errors
    out: list[tuple[str, str]] = []
    for path, msg in errors:
        parts = path.split(".")
        if len(parts) > 1 and parts[0] == "layers" and parts[1].isdigit() and int(parts[1]) < len(origins):
            path = ".".join(["layers", origins[int(parts[1])], *parts[2:]])
        if (path, msg) not in out:
            out.append((path, msg))
    return out
