"""``zoo eval CHECKPOINT``: validation loss/perplexity or recall accuracy of a checkpoint."""

from __future__ import annotations

import argparse
import json
import sys

from zoo.cli._transpoints import add_transpoint_args, use_transpoint_args
from zoo.cli.train import add_backend_arg

HELP = "evaluate a checkpoint (or a run directory's latest) on its task or on --data"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a checkpoint on its task or on --data", description=HELP)
    parser.add_argument("checkpoint", help="checkpoint directory or run directory")
    parser.add_argument(
        "--data",
        default=None,
        help="text corpus to evaluate on (default: the one it was trained on)",
    )
    parser.add_argument("--seq-len", type=int, default=None, help="default: the training sequence length")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model first")
    parser.add_argument(
        "--allow-large", action="store_true", help="load even when the model exceeds the device's free memory"
    )
    add_backend_arg(parser)
    add_transpoint_args(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoo import checkpoint as ckpt
    from zoo.cli.train import make_train_config
    from zoo.overrides import parse_backend_overrides
    from zoo.training.runs import corpus_drift, task_from_description
    from zoo.training.trainer import Trainer, resolve_device

    config = make_train_config(
        {
            "steps": 1,
            "batch_size": args.batch_size,
            "device": args.device,
            "precision": args.precision,
            "compile": args.compile,
            "progress": False,
        }
    )
    checkpoint = ckpt.open_checkpoint(args.checkpoint)
    description = checkpoint.trainer_state.get("task", {"task": "text", "seq_len": args.seq_len or 256})
    task = task_from_description(
        description,
        tokenizer=ckpt.load_tokenizer(checkpoint.path),
        data=args.data,
        seq_len=args.seq_len,
    )
    drift = corpus_drift(description, task) if args.data is None else None
    if drift:
        print(f"zoo eval: warning: {drift}", file=sys.stderr)
    model = ckpt.load(
        checkpoint.path,
        device=resolve_device(args.device),
        backends=parse_backend_overrides(args.backend),
        allow_large=args.allow_large,
    )
    use_transpoint_args(model, task.seq_len, args, "eval")
    metrics = Trainer(model, task, config).evaluate()
    print(
        json.dumps(
            {
                "checkpoint": str(checkpoint.path),
                "step": checkpoint.step,
                **task.describe(),
                **metrics,
            }
        )
    )
    return 0
