"""``zoo bench``: backends and models side by side (scan vs chunked; eager vs sdpa vs flex;
eager vs compiled), with ratios. Each backend must match the reference before it is timed."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time backends and models side by side (parity-checked)")
    p.add_argument("--suite", choices=["ssm", "attention", "model", "all"], default="all")
    p.add_argument("--seq-len", type=int, default=None, help="tokens (default: ssm 2048, attention 1024, model 512)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--preset", default="transmamba-tiny", help="model suite: preset to time")
    p.add_argument("--repeats", type=int, default=3)
    p.set_defaults(func=run)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run(args: argparse.Namespace) -> int:
    import torch

    from zoo import bench

    rows = []
    if args.suite in ("ssm", "all"):
        print(f"ssm suite on {args.device} ...", flush=True)
        rows += bench.ssm_suite(args.seq_len or 2048, device=args.device, repeats=args.repeats)
    if args.suite in ("attention", "all"):
        print(f"attention suite on {args.device} ...", flush=True)
        rows += bench.attention_suite(args.seq_len or 1024, device=args.device, repeats=args.repeats)
    if args.suite in ("model", "all"):
        print(f"model suite on {args.device} (compiling, ~30 s on CPU) ...", flush=True)
        rows += bench.model_suite(args.preset, seq_len=args.seq_len or 512, device=args.device, repeats=args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(bench.format_rows(rows))
    return 0
