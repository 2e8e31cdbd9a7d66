"""Side-by-side timings for ``zoo bench`` (CPU or GPU), with a parity gate.

Each suite times several implementations of one thing on the same inputs and prints a
table with the ratio to the first row. A backend whose output disagrees with the
reference (relative error above the dtype's tolerance) is reported as FAILED PARITY
and not timed. Timings are medians of ``repeats`` runs after ``warmup`` runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from zoo.registry import ATTENTION, SSM
from zoo.testing.checks import rel_err, tolerance


@dataclass
class Row:
    suite: str
    name: str
    shape: str
    ms: float | None
    note: str = ""
    rel_err: float | None = None  # against the suite's reference (0 for the reference itself)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], device: torch.device, *, warmup: int = 2, repeats: int = 5) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def _backend(registry, name: str, **params):
    entry = registry.get(name)
    return entry.obj(entry.params_model.model_validate(params))


def _compare_backends(
    suite: str,
    registry,
    names: list[str],
    shape: str,
    shapes: dict[str, int],
    device: torch.device,
    dtype: torch.dtype,
    call: Callable,
    *,
    warmup: int,
    repeats: int,
) -> list[Row]:
    """Time ``call(backend)`` for each named backend; the first that runs is the reference,
    and a backend whose output disagrees with it is reported, not timed."""
    rows, reference = [], None
    with torch.no_grad():
        for name in names:
            ok, reason = registry.get(name).availability()
            if not ok:
                rows.append(Row(suite, name, shape, None, f"unavailable: {reason}"))
                continue
            backend = _backend(registry, name)
            ok, reason = backend.supports(device=device, dtype=dtype, **shapes)
            if not ok:
                rows.append(Row(suite, name, shape, None, f"unsupported: {reason}"))
                continue
            out = call(backend).float()
            err = 0.0
            if reference is None:
                reference = out
            else:
                err = rel_err(out, reference)
                if err > tolerance(dtype) * 10:
                    rows.append(Row(suite, name, shape, None, f"FAILED PARITY (rel err {err:.1e})", err))
                    continue
            ms = time_ms(lambda b=backend: call(b), device, warmup=warmup, repeats=repeats)
            rows.append(Row(suite, name, shape, ms, rel_err=err))
    return rows


def ssm_suite(
    seq_len: int = 2048,
    *,
    batch: int = 1,
    heads: int = 8,
    headdim: int = 32,
    groups: int = 1,
    d_state: int = 32,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    names: list[str] | None = None,
    repeats: int = 3,
) -> list[Row]:
    """SSD forward: the sequential scan (reference) vs every other available ssm backend."""
    dev = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, seq_len, heads, headdim, generator=g).to(dev, dtype)
    dt = torch.nn.functional.softplus(torch.randn(batch, seq_len, heads, generator=g) - 2).to(dev, torch.float32)
    A = -torch.rand(heads, generator=g).add(0.5).to(dev)
    B = torch.randn(batch, seq_len, groups, d_state, generator=g).to(dev, dtype)
    C = torch.randn(batch, seq_len, groups, d_state, generator=g).to(dev, dtype)
    shape = f"B{batch}-T{seq_len}-H{heads}-P{headdim}-N{d_state}-G{groups}"
    names = names or ["scan"] + [n for n in SSM.names() if n != "scan"]
    shapes = dict(n_heads=heads, n_groups=groups, head_dim=headdim, state_dim=d_state)
    return _compare_backends(
        "ssm", SSM, names, shape, shapes, dev, dtype, lambda backend: backend(x, dt, A, B, C), warmup=1, repeats=repeats
    )


def attention_suite(
    seq_len: int = 1024,
    *,
    batch: int = 1,
    heads: int = 8,
    groups: int = 2,
    d_state: int = 64,
    headdim: int = 64,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    repeats: int = 5,
) -> list[Row]:
    """Grouped causal attention forward: eager (reference) vs sdpa vs flex."""
    dev = torch.device(device)
    g = torch.Generator(device="cpu").manual_seed(0)
    q = torch.randn(batch, seq_len, groups, d_state, generator=g).to(dev, dtype)
    k = torch.randn(batch, seq_len, groups, d_state, generator=g).to(dev, dtype)
    v = torch.randn(batch, seq_len, heads, headdim, generator=g).to(dev, dtype)
    scale = d_state**-0.5
    shape = f"B{batch}-T{seq_len}-H{heads}-G{groups}-N{d_state}-P{headdim}"
    names = ["eager"] + [n for n in ATTENTION.names() if n != "eager"]
    shapes = dict(n_heads=heads, n_groups=groups, head_dim=headdim, state_dim=d_state, requires_grad=0)
    return _compare_backends(
        "attention",
        ATTENTION,
        names,
        shape,
        shapes,
        dev,
        dtype,
        lambda backend: backend(q, k, v, scale=scale),
        warmup=2,
        repeats=repeats,
    )


def model_suite(
    preset: str = "transmamba-tiny", *, seq_len: int = 512, batch: int = 4, device: str = "cpu", repeats: int = 5
) -> list[Row]:
    """Whole-model forward: eager vs torch.compile (inductor), same weights."""
    import zoo

    dev = torch.device(device)
    eager = zoo.build(preset, device=dev)
    compiled = zoo.build(preset, device=dev, compile=True)
    compiled.load_state_dict(eager.state_dict())
    ids = torch.randint(0, eager.spec.vocab_size, (batch, seq_len), device=dev)
    shape = f"B{batch}-T{seq_len}"
    rows = []
    with torch.no_grad():
        reference = eager(ids)
        rows.append(
            Row("model", f"{preset} eager", shape, time_ms(lambda: eager(ids), dev, repeats=repeats), rel_err=0.0)
        )
        start = time.perf_counter()
        out = compiled(ids)
        compile_s = time.perf_counter() - start
        err = rel_err(out, reference)
        if err > 1e-4:
            rows.append(Row("model", f"{preset} compiled", shape, None, f"FAILED PARITY (rel err {err:.1e})", err))
        else:
            rows.append(
                Row(
                    "model",
                    f"{preset} compiled",
                    shape,
                    time_ms(lambda: compiled(ids), dev, repeats=repeats),
                    f"first call incl. compile {compile_s:.1f}s",
                    err,
                )
            )
    return rows


def format_rows(rows: list[Row]) -> str:
    """Markdown table; ratio = first timed row of the suite / this row (x faster)."""
    lines = ["| suite | implementation | shape | median ms | speed-up vs first | note |", "|---|---|---|---|---|---|"]
    base: dict[str, float] = {}
    for row in rows:
        if row.ms is not None and row.suite not in base:
            base[row.suite] = row.ms
        ms = f"{row.ms:.3f}" if row.ms is not None else "-"
        ratio = f"{base[row.suite] / row.ms:.2f}x" if row.ms is not None else "-"
        lines.append(f"| {row.suite} | {row.name} | {row.shape} | {ms} | {ratio} | {row.note} |")
    return "\n".join(lines)


METRIC = {"name": "median ms", "unit": "ms", "better": "lower"}


def saved_rows(rows: list[Row]) -> list[dict]:
    """Rows for ``zoo.bench_store.save_run``: each one's fields, ``key`` and ``value`` (ms)."""
    return [{"key": f"{row.suite} {row.name} {row.shape}", "value": row.ms, **asdict(row)} for row in rows]
