"""``zoo compare PRESET...``: train several models on the same data, steps and seed; table + plot."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from zoo.cli.train import (
    add_task_args,
    add_training_args,
    config_from_args,
    task_from_args,
)
from zoo.errors import ZooError

HELP = "train several models with the same data, steps and seed, and compare them"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compare", help=HELP, description=HELP)
    parser.add_argument("models", nargs="+", help="presets or spec files; LABEL=REF names a column")
    parser.add_argument("--budget", type=int, default=None, help="optimizer steps per model (same as --steps)")
    add_task_args(parser)
    add_training_args(parser)
    parser.add_argument("--out", default="runs/compare", help="output directory (default runs/compare)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    parser.set_defaults(func=run)


def parse_entry(entry: str) -> tuple[str, str]:
    label, sep, ref = entry.partition("=")
    return (label, ref) if sep else (Path(entry).stem, entry)


def compare(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from zoo.builder import parse_backend_overrides, spec_with_backends
    from zoo.training.runs import build_for_task, resolve_spec
    from zoo.training.trainer import Trainer, resolve_device

    if args.budget is not None:
        args.steps = args.budget
    task = task_from_args(args)
    config = config_from_args(args, save_every=0, keep_last=1)
    out = Path(args.out)
    entries = [parse_entry(entry) for entry in args.models]
    backends = parse_backend_overrides(args.backend)
    if backends:  # each override must apply to some model (a transformer has no ssm slot)
        applied = set().union(*(spec_with_backends(resolve_spec(ref), backends)[1] for _, ref in entries))
        unused = sorted(set(backends) - applied)
        if unused:
            raise ZooError(f"--backend {', '.join(unused)}: none of the compared models has that slot")
    rows = []
    for label, ref in entries:
        torch.manual_seed(config.seed)
        model = build_for_task(ref, task, device=resolve_device(config.device), backends=backends, strict=False)
        trainer = Trainer(model, task, config, out_dir=out / label)
        print(f"[{label}] {trainer.n_params:,} params, {config.steps} steps", file=sys.stderr)
        start = time.perf_counter()
        result = trainer.fit()
        rows.append(
            {
                "model": label,
                "ref": ref,
                "params": trainer.n_params,
                "steps": result.steps,
                "final_loss": result.final_loss,
                "tokens_per_s": round(result.tokens_per_s),
                "wall_s": round(time.perf_counter() - start, 1),
                **result.eval,
                "history": result.history,
            }
        )
    return rows


def run(args: argparse.Namespace) -> int:
    from zoo.training.runs import format_table

    rows = compare(args)
    out = Path(args.out)
    accuracy = args.task != "text"
    columns = [
        "model",
        "params",
        "final_loss",
        "eval_loss",
        "eval_accuracy" if accuracy else "eval_ppl",
        "tokens_per_s",
        "wall_s",
    ]
    table = format_table(rows, columns)
    print(table)
    (out / "compare.json").write_text(json.dumps({"argv": sys.argv[1:], "rows": rows}, indent=1))
    (out / "compare.txt").write_text(table + "\n")
    if not args.no_plot:
        print(f"plot: {plot_rows(rows, out / 'compare.png', accuracy=accuracy)}", file=sys.stderr)
    return 0


def plot_rows(rows: list[dict[str, Any]], path: Path, *, accuracy: bool) -> Path:
    """The PNG of a comparison (training loss, and the validation metric when evaluated more
    than once) from its rows; also for a ``compare.json`` made elsewhere with ``--no-plot``:
    ``plot_rows(json.load(open("compare.json"))["rows"], Path("compare.png"), accuracy=False)``."""
    from zoo.training.runs import plot_panels, smooth

    panels = [
        (
            "training loss (EMA 0.9)",
            "loss",
            {r["model"]: smooth([(h["step"], h["loss"]) for h in r["history"]]) for r in rows},
        )
    ]
    key = "eval_accuracy" if accuracy else "eval_loss"
    evals = {r["model"]: [(h["step"], h[key]) for h in r["history"] if key in h] for r in rows}
    if any(len(points) > 1 for points in evals.values()):
        panels.append((f"validation {key.removeprefix('eval_')}", key.removeprefix("eval_"), evals))
    return plot_panels(panels, path)
