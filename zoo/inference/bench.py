"""Decode benchmark: tokens/s and cache bytes vs context length, model against model.

Each row is one (preset, context) measurement: prefill ``context`` tokens into a cache of
``context + warmup + steps`` positions (the TransPoint schedule is evaluated at that
length), then time ``steps`` greedy decode steps (sampling on the device included).
``cache_bytes`` is what the cache holds after prefill (released prefix buffers excluded);
``cache_bytes_allocated`` what ``allocate_cache`` reserved. A preset whose decode parity
check fails is not timed (its row says why).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from zoo.inference.engine import compile_step, decode, prefill

MODES = ("eager", "compile", "reduce-overhead", "max-autotune", "cudagraph")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model, cache, mode: str):
    if mode == "eager":
        return None
    if mode == "compile":
        return compile_step(model)
    if mode in ("reduce-overhead", "max-autotune"):
        return compile_step(model, mode=mode)
    if mode == "cudagraph":
        from zoo.inference.cudagraph import GraphedStep

        return GraphedStep(model, cache)
    raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")


@torch.no_grad()
def decode_parity(model, *, prompt: int = 40, new: int = 16, mode: str = "eager", seed: int = 0) -> float:
    """Relative error of prefill + decode logits vs one full forward (same per-layer TransPoints)."""
    device = model.embedding.weight.device
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, model.spec.vocab_size, (1, prompt + new), generator=generator).to(device)
    cache = model.allocate_cache(1, prompt + new)
    step = make_step(model, cache, mode)
    logits = [prefill(model, cache, tokens[:, :prompt])]
    for index in range(prompt, prompt + new - 1):
        logits.append(decode(model, cache, tokens[:, index], step).clone())
    got = torch.stack(logits, dim=1).float()
    ref = model(tokens, transpoints=cache.transpoints)[:, prompt - 1 : -1].float()
    return ((got - ref).norm() / ref.norm()).item()


@torch.no_grad()
def decode_benchmark(
    presets: Sequence[str] = ("transmamba-tiny", "transformer-tiny", "mamba2-tiny"),
    contexts: Sequence[int] = (128, 512, 2048),
    *,
    batch_size: int = 1,
    steps: int = 32,
    warmup: int = 4,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    mode: str = "eager",
    parity_tol: float | None = 1e-3,
    models: dict | None = None,
    log=None,
) -> list[dict]:
    """Rows of {preset, context, batch_size, mode, tokens_per_s, ms_per_step, cache_bytes, ...}.

    ``first_prefill_s`` is the wall time of the row's one prefill, the first call at that
    shape and dtype: kernel compilation (Triton's, on a GPU) is inside it, so it is no
    prefill speed."""
    from zoo.builder import build

    device = torch.device(device)
    rows = []
    for preset in presets:
        model = (models or {}).get(preset)
        if model is None:
            model = build(preset, device=device, dtype=dtype, requires_grad=False).eval()
        parity = None
        if parity_tol is not None:
            parity = decode_parity(model.float() if dtype != torch.float32 else model, mode=mode)
            if dtype != torch.float32:
                model = model.to(dtype)
            if not parity < parity_tol:
                rows.append({"preset": preset, "mode": mode, "error": f"parity {parity:.2e} >= {parity_tol}"})
                continue
        for context in contexts:
            cache = model.allocate_cache(batch_size, context + warmup + steps)
            allocated = cache.nbytes()
            generator = torch.Generator().manual_seed(context)
            prompt = torch.randint(0, model.spec.vocab_size, (batch_size, context), generator=generator).to(device)
            _sync(device)
            start = time.perf_counter()
            logits = prefill(model, cache, prompt)
            _sync(device)
            first_prefill_s = time.perf_counter() - start  # compilation included: not a prefill speed
            step = make_step(model, cache, mode)
            tokens = logits.argmax(-1)
            for _ in range(warmup):
                tokens = decode(model, cache, tokens, step).argmax(-1)
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                tokens = decode(model, cache, tokens, step).argmax(-1)
            _sync(device)
            elapsed = time.perf_counter() - start
            row = {
                "preset": preset,
                "context": context,
                "batch_size": batch_size,
                "mode": mode,
                "dtype": str(dtype).removeprefix("torch."),
                "tokens_per_s": batch_size * steps / elapsed,
                "ms_per_step": 1e3 * elapsed / steps,
                "cache_bytes": cache.nbytes(),
                "cache_bytes_allocated": allocated,
                "first_prefill_s": first_prefill_s,
                "parity_rel_err": parity,
                "transpoints": list(cache.transpoints),
            }
            rows.append(row)
            if log is not None:
                log(row)
            del cache, step
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [
        "| preset | context | batch | mode | tokens/s | ms/step | cache MiB (live) | cache MiB (allocated) |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['preset']} | - | - | {row['mode']} | {row['error']} | | | |")
            continue
        lines.append(
            f"| {row['preset']} | {row['context']} | {row['batch_size']} | {row['mode']} | "
            f"{row['tokens_per_s']:.1f} | {row['ms_per_step']:.2f} | {row['cache_bytes'] / 2**20:.2f} | "
            f"{row['cache_bytes_allocated'] / 2**20:.2f} |"
        )
    return "\n".join(lines)
