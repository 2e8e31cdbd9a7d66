"""Where a training step's GPU time goes: torch.profiler over compiled bf16 training steps.

For each model and T it runs the throughput benchmark's step (zoo.training.throughput: same
build, backends, optimizer and tokens per step), profiles ``--steps`` steps after warm-up,
and sums CUDA kernel time by category (matmul, attention, SSD, conv, cross-entropy,
optimizer, fused elementwise, other) and by kernel. Writes ``profile_train.json`` and prints
one markdown table per row.

    python benchmarks/profile_train.py --models transmamba transformer --seq-lens 2048 8192
    python benchmarks/profile_train.py --diff BEFORE.json AFTER.json   # what a change moved, no GPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

import schedules  # noqa: F401  (registers the schedules where the entry points are not installed)
from zoo.bench_store import machine_info
from zoo.checkpoint import atomic_write_text
from zoo.training.throughput import ThroughputConfig, _build, _training_step

# First match wins; patterns are matched against the lower-cased kernel name.
CATEGORIES = [
    ("cross-entropy", r"cross_entropy|nll_loss|log_softmax|softmax_backward|cunn_softmax"),
    ("attention", r"flash|fmha|attention|sdpa|cudnn.*mha|_attn"),
    ("ssd", r"ssd|chunk_state|chunk_scan|state_passing|bmm_chunk|cumsum_kernel|converter|^_chunk_|^_seg_"),
    ("conv", r"^_conv_|causal_conv|conv1d"),  # not inductor's "convert_element_type" kernels
    ("optimizer", r"adam|multi_tensor|foreach|clip"),
    ("matmul", r"gemm|sm90_xmma|cutlass|nvjet|matmul|ampere_|sm80_|cublas"),
    ("fused elementwise (inductor)", r"^triton_(poi|red|per)"),
    ("copy / fill", r"copy|fill|memset|memcpy|cat"),
]


def category(name: str) -> str:
    low = name.lower()
    for label, pattern in CATEGORIES:
        if re.search(pattern, low):
            return label
    return "other"


def profile_row(
    label: str, size: str, seq_len: int, config: ThroughputConfig, steps: int, backends: dict[str, str]
) -> dict[str, Any]:
    device = torch.device("cuda")
    batch = config.tokens_per_step // seq_len
    model, _, n_params, used = _build(label, size, seq_len, config, device, backends)
    from zoo.training.optim import make_optimizer

    optimizer = make_optimizer(model, lr=1e-4, weight_decay=0.1)
    vocab = 32000
    tokens = torch.randint(0, vocab, (batch, seq_len + 1), device=device)
    micro = [(tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous())]

    def step() -> torch.Tensor:
        return _training_step(model, optimizer, micro, torch.bfloat16, device, 1.0)

    for _ in range(config.warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    began = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - began) * 1e3 / steps
    kernels: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            kernels[event.key] += event.self_device_time_total / 1e3 / steps
    by_cat: dict[str, float] = defaultdict(float)
    for name, ms in kernels.items():
        by_cat[category(name)] += ms
    total = sum(kernels.values())
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:25]
    row = {
        "model": label,
        "seq_len": seq_len,
        "batch": batch,
        "params": n_params,
        "backends": used,
        "step_wall_ms": round(wall_ms, 2),
        "kernel_ms": round(total, 2),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "categories_ms": {k: round(v, 2) for k, v in sorted(by_cat.items(), key=lambda kv: -kv[1])},
        "top_kernels_ms": [(name[:120], round(ms, 3), category(name)) for name, ms in top],
    }
    return row


def render(row: dict[str, Any]) -> str:
    lines = [
        f"### {row['model']} T={row['seq_len']} (batch {row['batch']}, {row['params'] / 1e6:.1f}M, {row['backends']})",
        f"step {row['step_wall_ms']} ms wall, {row['kernel_ms']} ms in kernels, peak {row['peak_memory_gib']} GiB",
        "",
        "| category | ms/step | share |",
        "|---|---:|---:|",
    ]
    for name, ms in row["categories_ms"].items():
        lines.append(f"| {name} | {ms:.2f} | {100 * ms / row['kernel_ms']:.1f}% |")
    lines += ["", "| kernel | ms/step | category |", "|---|---:|---|"]
    for name, ms, cat in row["top_kernels_ms"][:15]:
        lines.append(f"| `{name[:90]}` | {ms:.3f} | {cat} |")
    return "\n".join(lines)


def _side_by_side(title: str, before: dict[str, float], after: dict[str, float], digits: int) -> list[str]:
    """A markdown table of ms per step before and after, every name of either, largest first;
    "-" where a record lacks the name."""

    def cell(ms: float | None) -> str:
        return "-" if ms is None else f"{ms:.{digits}f}"

    lines = [f"| {title} | before | after | change |", "|---|---:|---:|---:|"]
    for name in sorted(set(before) | set(after), key=lambda n: -max(before.get(n, 0), after.get(n, 0))):
        a, b = before.get(name), after.get(name)
        change = "" if a is None or b is None else f"{b - a:+.2f}"
        shown = name if title == "category" else f"`{name[:90]}`"
        lines.append(f"| {shown} | {cell(a)} | {cell(b)} | {change} |")
    return lines


def diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Markdown: for each (model, T) in both records, ms per step by category and by kernel,
    before and after. A kernel outside a record's top list shows as "-" there (its time is in
    the category sums); a category only one record has (the rules changed) as "-" in the other."""
    index = {(r["model"], r["seq_len"]): r for r in before["rows"] if "error" not in r}
    blocks = []
    for row in after["rows"]:
        old = index.get((row.get("model"), row.get("seq_len")))
        if old is None or "error" in row:
            continue
        lines = [
            f"### {row['model']} T={row['seq_len']}",
            f"kernels {old['kernel_ms']:.2f} -> {row['kernel_ms']:.2f} ms per step "
            f"({row['kernel_ms'] - old['kernel_ms']:+.2f}); wall {old['step_wall_ms']:.2f} -> "
            f"{row['step_wall_ms']:.2f} ms; peak {old['peak_memory_gib']} -> {row['peak_memory_gib']} GiB",
            "",
            *_side_by_side("category", old["categories_ms"], row["categories_ms"], 2),
            "",
            *_side_by_side(
                "kernel",
                {name: ms for name, ms, _ in old["top_kernels_ms"]},
                {name: ms for name, ms, _ in row["top_kernels_ms"]},
                3,
            ),
        ]
        blocks.append("\n".join(lines))
    if not blocks:
        return "no (model, T) row is in both records"
    return "\n\n".join(blocks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["transmamba", "transformer", "mamba2"])
    parser.add_argument("--seq-lens", nargs="+", type=int, default=[2048, 8192])
    parser.add_argument("--size", default="400m")
    parser.add_argument("--tokens-per-step", type=int, default=32768)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--backend",
        action="append",
        default=None,
        help="SLOT=NAME (default: ssm and converter on triton, as the throughput benchmark)",
    )
    parser.add_argument("--out", default="profile_train.json")
    parser.add_argument(
        "--diff",
        nargs=2,
        metavar=("BEFORE", "AFTER"),
        help="print what changed between two records this script wrote (no GPU needed), and exit",
    )
    args = parser.parse_args(argv)
    if args.diff:
        records = []
        for path in args.diff:
            try:
                records.append(json.loads(Path(path).read_text()))
            except (OSError, ValueError) as exc:
                print(f"error: --diff {path}: {exc}", file=sys.stderr)
                return 2
            if not isinstance(records[-1], dict) or "rows" not in records[-1]:
                print(f"error: --diff {path}: not a profile_train record (no 'rows')", file=sys.stderr)
                return 2
        try:
            print(diff(*records))
        except (KeyError, TypeError, ValueError) as exc:
            print(f"error: --diff: a row lacks or mistypes {exc} (not a profile_train record)", file=sys.stderr)
            return 2
        return 0
    if not torch.cuda.is_available():
        print("error: the profile needs a CUDA device", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    config = ThroughputConfig(tokens_per_step=args.tokens_per_step, warmup=args.warmup, steps=args.steps)
    backends = dict(b.split("=", 1) for b in (args.backend or ["ssm=triton", "converter=triton"]))
    rows = []
    for seq_len in args.seq_lens:
        for label in args.models:
            try:
                row = profile_row(label, args.size, seq_len, config, args.steps, backends)
            except Exception as exc:  # one failing row (OOM) is a result; go on
                row = {"model": label, "seq_len": seq_len, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
                torch.cuda.empty_cache()
            rows.append(row)
            torch._dynamo.reset()  # each row compiles from scratch, as a fresh process would
            torch.cuda.empty_cache()
            print(render(row) if "error" not in row else f"{label} T={seq_len}: {row['error']}", flush=True)
    record = {
        "command": " ".join(sys.argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **machine_info("cuda"),
        "rows": rows,
    }
    atomic_write_text(args.out, json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
