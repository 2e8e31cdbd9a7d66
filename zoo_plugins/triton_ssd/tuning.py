"""Launch knobs of the Triton SSD as one frozen value, held by whoever launches.

A ``Tuning`` travels with each call: the backends hold one (from their ``tuning`` param),
the functions of :mod:`zoo_plugins.triton_ssd.api` take one, and the custom ops receive it
as a list of ints (``to_args``; a schema has no dataclass type). Nothing is module-global,
so two models in one process can run different launch configurations.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

_WARP_KNOBS = ("warps", "chunk_warps")


@dataclasses.dataclass(frozen=True)
class Tuning:
    """Launch knobs; None = the default.

    A walking kernel runs one program per (batch, head, segment of chunks). When there are
    fewer (batch, head) rows than SMs, the chunks are cut into segments so that there are
    about ``programs_per_sm`` programs per SM (default 4: benchmarks/gpu_ssd.py --sweep
    measured it best at B=1, T=64K, H=48 on an H200; docs/benchmarks.md).
    ``chunks_per_segment`` forces a segment length (tests use it to cover one and several
    segments); ``warps`` overrides the walking kernels' warp count, ``stages`` the pipeline
    stages of 16-bit runs (fewer stages spill less: kernel_resources.py). ``chunk_warps`` /
    ``chunk_stages`` are those of the backward's chunk-parallel kernels (dB/dC and dx).
    ``maxnreg`` / ``chunk_maxnreg`` cap the registers per thread (ptxas .maxnreg): at 8
    warps, 128 lets two programs share an SM at the price of spills.

    >>> Tuning(chunk_warps=4).to_args()
    [0, 0, 0, 0, 4, 0, 0, 0]
    """

    programs_per_sm: int | None = None
    chunks_per_segment: int | None = None
    warps: int | None = None
    stages: int | None = None
    chunk_warps: int | None = None
    chunk_stages: int | None = None
    maxnreg: int | None = None
    chunk_maxnreg: int | None = None

    def __post_init__(self) -> None:
        for name, value in self.knobs().items():
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"tuning knob {name}={value!r}: expected a positive int or None")
            if name in _WARP_KNOBS and value & (value - 1):
                raise ValueError(f"tuning knob {name}={value}: a warp count must be a power of two (1, 2, 4, 8, 16)")
        # what the ops receive, worked out once (a call at B=1 waits on host time)
        object.__setattr__(self, "_args", tuple(value or 0 for value in self.knobs().values()))

    @classmethod
    def of(cls, **knobs: int | None) -> Tuning:
        """``Tuning(**knobs)`` with a KeyError naming unknown knobs (instead of a TypeError)."""
        unknown = sorted(set(knobs) - set(names()))
        if unknown:
            raise KeyError(f"unknown Triton SSD tuning knob(s) {unknown}; known: {sorted(names())}")
        return cls(**knobs)

    @classmethod
    def parse(cls, text: str) -> Tuning:
        """``"chunk_warps=4,stages=2"`` -> Tuning(chunk_warps=4, stages=2) (``none`` -> None)."""
        return cls.of(**parse_knobs(text))

    def knobs(self) -> dict[str, int | None]:
        return dataclasses.asdict(self)

    def overrides(self) -> dict[str, int]:
        """The knobs that are set (not None)."""
        return {name: value for name, value in self.knobs().items() if value is not None}

    def replace(self, **knobs: int | None) -> Tuning:
        return dataclasses.replace(self, **knobs)

    def to_args(self) -> list[int]:
        """The knobs as the custom ops take them: a list of ints in field order, 0 for None."""
        return list(self._args)

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def _from_tuple(values: tuple[int, ...]) -> Tuning:
        return Tuning(*(value or None for value in values))

    @staticmethod
    def from_args(values: Sequence[int] | None) -> Tuning:
        """Inverse of ``to_args`` (None -> the defaults); cached, as it runs on every launch."""
        return Tuning._from_tuple(tuple(values)) if values else DEFAULT


def names() -> tuple[str, ...]:
    return tuple(field.name for field in dataclasses.fields(Tuning))


def parse_knobs(text: str) -> dict[str, int | None]:
    """``"chunk_warps=4,stages=2"`` -> {"chunk_warps": 4, "stages": 2} (``none`` -> None)."""
    knobs: dict[str, int | None] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"tuning {item!r}: expected NAME=VALUE, e.g. chunk_warps=4")
        name, value = name.strip(), value.strip()
        if value.lower() == "none":
            knobs[name] = None
        elif value.isdigit():
            knobs[name] = int(value)
        else:
            raise ValueError(f"tuning {name}={value!r}: expected a positive integer or none")
    return knobs


DEFAULT = Tuning()
