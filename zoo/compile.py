"""How zoo compiles: one policy for the builder, the trainer, checkpoint loading and the
inference engine.

- ``fullgraph=True`` unless a caller says otherwise: a graph break raises where it happens
  instead of running part of the model eagerly, unseen.
- Dynamo settings belong to the compiled region, never to the process: ``torch.compile``'s
  own ``recompile_limit`` and ``isolate_recompiles``, not a write to ``torch._dynamo.config``.
  Isolation (the default here) matters under ``fullgraph``: otherwise every
  ``torch.compile`` of the same code (``CausalLM.forward`` for every model in a process)
  shares one set of graphs and one recompile count, so the ninth differently built model
  compiled in one process fails with ``FailOnRecompileLimitHit``. The price: an isolated
  region compiles its own graphs even where an earlier region's would fit, so code compiled
  again and again for the same model (a decode step per ``generate`` call) shares instead,
  with a limit that leaves room for every model in the process.
- On a torch whose ``torch.compile`` lacks those two arguments (before 2.13) there is no
  per-region setting: zoo then raises dynamo's process-wide recompile limit once, to
  ``LEGACY_RECOMPILE_LIMIT`` (or the region's own limit, if larger), so that the models of
  one process, which share one count there, do not hit it.
- One notice line on stderr before a compile that may take long (compiling happens on the
  first call), once per distinct message in a process.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import torch

NO_COMPILE_HINT = "--no-compile to skip"

_announced: set[str] = set()

# Graphs per code object that every region of a process shares on a torch without per-region
# limits: room for the models of a test session or a `zoo compare` run.
LEGACY_RECOMPILE_LIMIT = 64
_REGION_LIMITS = "recompile_limit" in inspect.signature(torch.compile).parameters

T = TypeVar("T")


def compile_options(
    *,
    backend: str = "inductor",
    mode: str | None = None,
    dynamic: bool | None = None,
    fullgraph: bool = True,
    recompile_limit: int | None = None,
    isolate: bool = True,
) -> dict[str, Any]:
    """The keyword arguments zoo passes to ``torch.compile``.

    ``recompile_limit``: graphs this region may compile (None: dynamo's default, 8). Set it
    where the number of graphs is known and bounded, e.g. one per TransPoint tuple.
    ``isolate``: this region keeps its own graphs and recompile count (see the module notes).
    """
    if recompile_limit is not None and recompile_limit < 1:
        raise ValueError(f"recompile_limit must be at least 1, got {recompile_limit}")
    options: dict[str, Any] = {
        "backend": backend,
        "mode": None if mode == "default" else mode,
        "dynamic": dynamic,
        "fullgraph": fullgraph,
    }
    if _REGION_LIMITS:
        options.update(recompile_limit=recompile_limit, isolate_recompiles=isolate)
    else:
        _raise_process_limit(max(LEGACY_RECOMPILE_LIMIT, recompile_limit or 0))
    return options


def _raise_process_limit(limit: int) -> None:
    """The fallback where ``torch.compile`` has no per-region limit (see the module notes)."""
    import torch._dynamo.config as dynamo_config

    name = "recompile_limit" if hasattr(dynamo_config, "recompile_limit") else "cache_size_limit"
    if getattr(dynamo_config, name) < limit:
        setattr(dynamo_config, name, limit)
    if getattr(dynamo_config, "accumulated_recompile_limit", limit) < limit:
        dynamo_config.accumulated_recompile_limit = limit


def dynamic_shapes(dynamic: bool | None, *, static_lengths: bool) -> bool | None:
    """``torch.compile``'s ``dynamic`` for a model: a spec's True or False as it is; None
    (dynamo's automatic dynamic shapes) becomes False for a model with TransPoint layers
    (``static_lengths``). Such a model evaluates its schedule on the sequence length in
    forward, host-side arithmetic (floats, rounding) that dynamo cannot turn into guards once
    it marks the length dynamic, which it does at the second length a model sees; each length
    has TransPoints of its own anyway, so one static graph per shape is what it needs."""
    return False if dynamic is None and static_lengths else dynamic


def spec_options(spec: Any, *, static_lengths: bool = False) -> dict[str, Any]:
    """The arguments of ``compile_options`` that a model spec's ``compile`` section (a
    ``CompileSpec``) sets, for ``compiled`` / ``compile_in_place``; ``static_lengths`` as in
    :func:`dynamic_shapes`."""
    dynamic = dynamic_shapes(spec.dynamic, static_lengths=static_lengths)
    return {"backend": spec.backend, "mode": spec.mode, "dynamic": dynamic, "fullgraph": spec.fullgraph}


def notice(what: str, hint: str | None = NO_COMPILE_HINT) -> None:
    """Print ``compiling <what> (first call takes a while; <hint>)`` once per process."""
    detail = "first call takes a while" + (f"; {hint}" if hint else "")
    line = f"compiling {what} ({detail})"
    if line in _announced:
        return
    _announced.add(line)
    print(line, file=sys.stderr, flush=True)


def compiled(
    target: Callable[..., T], *, what: str, hint: str | None = NO_COMPILE_HINT, **options: Any
) -> Callable[..., T]:
    """``torch.compile(target)`` under the policy; ``options`` go to ``compile_options``.
    A module comes back wrapped (its ``state_dict`` keys gain ``_orig_mod.``; keep the
    module itself for saving, or use ``compile_in_place``)."""
    kwargs = compile_options(**options)
    notice(what, hint)
    return torch.compile(target, **kwargs)


def compile_in_place(
    module: torch.nn.Module, *, what: str, hint: str | None = NO_COMPILE_HINT, **options: Any
) -> torch.nn.Module:
    """``module.compile()`` under the policy (state_dict keys stay unprefixed); returns ``module``."""
    kwargs = compile_options(**options)
    notice(what, hint)
    module.compile(**kwargs)
    return module
