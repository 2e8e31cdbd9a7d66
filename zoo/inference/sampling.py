"""Token sampling on the device: greedy, temperature, top-k, top-p (nucleus); and the
up-front check of every argument of a generate call."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

import torch

from zoo.errors import ZooError


class GenerationError(ZooError, ValueError):
    """A generate call's argument is out of range; the message names it."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def sampling_problem(
    max_new_tokens: Any, *, temperature: Any = 0.0, top_k: Any = None, top_p: Any = None, seed: Any = None
) -> tuple[str, Any, str] | None:
    """The first sampling option out of range as (name, value, rule), or None.

    The one statement of the rules: ``check_generation_args`` words it with the Python
    names, ``zoo generate`` with its flags, before a model is loaded.
    """
    checks = (
        ("max_new_tokens", max_new_tokens, _is_int(max_new_tokens) and max_new_tokens >= 1, "must be an integer >= 1"),
        (
            "temperature",
            temperature,
            not isinstance(temperature, bool)
            and isinstance(temperature, (int, float))
            and math.isfinite(temperature)
            and temperature >= 0,
            "must be a finite number >= 0 (0: greedy)",
        ),
        ("top_k", top_k, top_k is None or (_is_int(top_k) and top_k >= 1), "must be an integer >= 1 or None"),
        (
            "top_p",
            top_p,
            top_p is None
            or (not isinstance(top_p, bool) and isinstance(top_p, (int, float)) and 0 < top_p <= 1),  # NaN fails
            "must lie in (0, 1] or be None",
        ),
        (
            "seed",
            seed,
            seed is None or (_is_int(seed) and 0 <= seed < 2**63),
            "must be an integer in [0, 2**63) or None",
        ),
    )
    for name, value, ok, rule in checks:
        if not ok:
            return name, value, rule
    return None


def check_generation_args(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: Any,
    *,
    temperature: Any = 0.0,
    top_k: Any = None,
    top_p: Any = None,
    seed: Any = None,
    eos_id: Any = None,
    lengths: Sequence[Any] | None = None,
    allow_large: bool = False,
    transpoints: Sequence[int] | str | None = None,
    schedule: Any = None,
) -> list[int]:
    """Every argument of ``zoo.generate`` checked once, before anything is allocated.

    Token ids must lie in the vocabulary (one host read of their min and max), sampling
    options in range whether or not they are used (greedy ignores top_p, but top_p=1.5 is
    still a mistake), and the cache for ``max(lengths) + max_new_tokens`` positions must fit
    the device (``zoo.memory``) unless ``allow_large``. ``transpoints`` / ``schedule`` are the
    override ``zoo.generate`` gets (``zoo.inference.transpoints.resolve_transpoints``, with its
    warning): a layer's attention cache holds its P positions, so the estimate sizes the
    cache the run will allocate. Returns those per-layer TransPoints of the cache.
    """
    vocab = model.embedding.weight.shape[0]
    if not isinstance(input_ids, torch.Tensor) or input_ids.dtype not in (
        torch.long,
        torch.int,
        torch.int16,
        torch.int8,
        torch.uint8,
    ):
        raise GenerationError(
            f"input_ids must be an integer tensor, got {type(input_ids).__name__}"
            + (f" of {input_ids.dtype}" if isinstance(input_ids, torch.Tensor) else "")
        )
    if input_ids.dim() not in (1, 2) or input_ids.numel() == 0:
        raise GenerationError(f"input_ids must be [T] or [B, T] with T >= 1, got shape {list(input_ids.shape)}")
    low, high = int(input_ids.min()), int(input_ids.max())
    if low < 0 or high >= vocab:
        raise GenerationError(f"input_ids hold token ids in [{low}, {high}]; the vocabulary is [0, {vocab})")
    problem = sampling_problem(max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    if problem is not None:
        name, value, rule = problem
        raise GenerationError(f"{name} {rule}, got {value!r}")
    if eos_id is not None and (not _is_int(eos_id) or not 0 <= eos_id < vocab):
        raise GenerationError(f"eos_id must be a token id in [0, {vocab}) or None, got {eos_id!r}")
    batch, seq_len = (1, input_ids.shape[0]) if input_ids.dim() == 1 else input_ids.shape
    if lengths is not None:
        try:
            values = [operator.index(n) for n in lengths]  # ints, numpy ints, 0-d int tensors; not floats
        except TypeError:
            values = []
        if len(values) != batch or len(lengths) != batch or not all(1 <= n <= seq_len for n in values):
            raise GenerationError(f"lengths must give {batch} integers in [1, {seq_len}], got {list(lengths)!r}")
    longest = seq_len if lengths is None else max(values)
    from zoo.inference.transpoints import resolve_transpoints
    from zoo.memory import cache_bytes, check_fits

    max_length = longest + max_new_tokens
    chosen = resolve_transpoints(model, max_length, transpoints=transpoints, schedule=schedule)
    need = cache_bytes(model, batch, max_length, transpoints=chosen) + batch * max_new_tokens * 8
    check_fits(
        f"generating {max_new_tokens} tokens for {batch} row(s) (the inference cache)",
        need,
        model.embedding.weight.device,
        allow_large=allow_large,
    )
    return chosen


def sample(
    logits: torch.Tensor,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits [B,V] -> token ids [B] (long). temperature 0 is greedy (argmax)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        kth = torch.topk(scores, min(top_k, scores.shape[-1]), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(dim=-1)
        # drop a token once the mass before it already reaches top_p (the top token always stays)
        drop_sorted = (cumulative - torch.softmax(sorted_scores, dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
