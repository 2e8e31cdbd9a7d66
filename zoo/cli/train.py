"""``zoo train SPEC|PRESET``: train a model on a corpus or a synthetic recall task."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from zoo.training.trainer import TrainConfig

HELP = "train a model (preset or spec file) on text or a synthetic recall task"


def add_task_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--task",
        choices=("text", "mqar", "copy", "induction", "phonebook"),  # zoo.data.tasks.TASK_KINDS
        default="text",
        help="default: text; the recall tasks report their chance floor beside the accuracy",
    )
    group.add_argument(
        "--data",
        default=None,
        help="text corpus: builtin (default), builtin:topics, builtin:stdlib, a file, a directory or a glob",
    )
    group.add_argument(
        "--tokenizer",
        default="byte",
        help="byte (default) or bpe[:VOCAB] (trained locally; needs the bpe extra)",
    )
    group.add_argument("--seq-len", type=int, default=256, help="tokens per sequence (default 256)")
    group.add_argument("--vocab", type=int, default=64, help="synthetic tasks: vocabulary size (default 64)")
    group.add_argument(
        "--num-items",
        type=int,
        default=None,
        help="synthetic tasks: key-value pairs (mqar, default seq_len/8), tokens to copy (copy: seq_len/4, "
        "induction: seq_len/2) or phone-book entries (phonebook: as many as fit)",
    )


def add_backend_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--backend SLOT=NAME``, repeatable (parsed by ``zoo.builder.parse_backend_overrides``)."""
    parser.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="SLOT=NAME",
        help="run every layer that has backend slot SLOT (attention, ssm, converter) on backend NAME, "
        "e.g. --backend ssm=triton on a GPU, or ssm=chunked for a triton-trained checkpoint on a CPU; "
        "repeatable (zoo list shows the backends)",
    )


def add_training_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--steps", type=int, default=1000)
    group.add_argument("--batch-size", type=int, default=16)
    group.add_argument("--grad-accum", type=int, default=1)
    group.add_argument("--lr", type=float, default=3e-3)
    group.add_argument("--min-lr-ratio", type=float, default=0.1)
    group.add_argument("--warmup", type=int, default=None, help="warmup steps (default: 5%% of --steps)")
    group.add_argument("--weight-decay", type=float, default=0.1)
    group.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip; 0 turns it off")
    group.add_argument("--seed", type=int, default=0)
    group.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda, cuda:1 ...")
    group.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="auto: bf16 autocast on CUDA, fp32 on CPU",
    )
    group.add_argument("--no-compile", action="store_true", help="run eagerly instead of torch.compile")
    group.add_argument(
        "--eager-eval",
        action="store_true",
        help="evaluate without compiling (default: compiled on CUDA; saves the eval graph's compile time)",
    )
    group.add_argument("--eval-every", type=int, default=0, help="evaluate every N steps (0: at the end)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_backend_arg(group)


def config_from_args(args: argparse.Namespace, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "lr": args.lr,
        "min_lr_ratio": args.min_lr_ratio,
        "warmup_steps": args.warmup if args.warmup is not None else max(1, args.steps // 20),
        "weight_decay": args.weight_decay,
        "grad_clip": args.clip or None,
        "seed": args.seed,
        "device": args.device,
        "precision": args.precision,
        "compile": not args.no_compile,
        "compile_eval": False if args.eager_eval else None,
        "eval_every": args.eval_every,
        "progress": not args.no_progress,
    }
    values.update(overrides)
    return make_train_config(values)


def make_train_config(values: dict[str, Any]) -> TrainConfig:
    """``TrainConfig(**values)``; a refusal is one line naming each command-line flag."""
    from pydantic import ValidationError

    from zoo.errors import ZooError

    try:
        return TrainConfig(**values)
    except ValidationError as exc:  # one line naming the flag, not pydantic's report
        flags = {"warmup_steps": "warmup", "grad_clip": "clip", "save_every": "save-every", "keep_last": "keep"}
        problems = []
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0]) if error.get("loc") else "?"
            problems.append(f"--{flags.get(field, field).replace('_', '-')} {values.get(field)!r}: {error['msg']}")
        raise ZooError("; ".join(problems)) from None


def task_from_args(args: argparse.Namespace, tokenizer: Any = None) -> Any:
    from zoo.data.tasks import make_task

    return make_task(
        args.task,
        data=args.data,
        seq_len=args.seq_len,
        seed=args.seed,
        tokenizer=tokenizer if tokenizer is not None else args.tokenizer,
        vocab_size=args.vocab,
        num_items=args.num_items,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help=HELP, description=HELP)
    parser.add_argument("spec", help="preset name (e.g. transmamba-tiny) or a spec JSON file")
    add_task_args(parser)
    add_training_args(parser)
    group = parser.add_argument_group("output")
    group.add_argument("--out", default=None, help="run directory (default runs/<spec name>)")
    group.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    group.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (0: at the end)")
    group.add_argument("--keep", type=int, default=3, help="checkpoints to keep (default 3)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoo.training.runs import run_lock

    out = Path(args.out or Path("runs") / Path(args.spec).stem)
    with run_lock(out):  # before reading or writing anything in it: one writer per run directory
        return _train(args, out)


def _train(args: argparse.Namespace, out: Path) -> int:
    from zoo import checkpoint as ckpt
    from zoo.builder import parse_backend_overrides
    from zoo.training.runs import build_for_task
    from zoo.training.trainer import Trainer, resolve_device

    tokenizer = None
    ref: Any = args.spec
    latest = ckpt.latest_checkpoint(out)
    if args.resume and latest is not None:
        checkpoint = ckpt.open_checkpoint(latest, verify=False)
        tokenizer = ckpt.load_tokenizer(latest)  # a BPE must not be retrained differently
        if checkpoint.spec is not None:  # the architecture and backends it was trained with; --backend wins
            ref = checkpoint.spec
    elif latest is not None:
        print(
            f"note: {out} holds checkpoints; starting over (pass --resume to continue)",
            file=sys.stderr,
        )
    task = task_from_args(args, tokenizer)
    config = config_from_args(args, save_every=args.save_every, keep_last=args.keep)
    import torch

    torch.manual_seed(config.seed)
    model = build_for_task(
        ref,
        task,
        device=resolve_device(config.device),
        backends=parse_backend_overrides(args.backend),
    )
    trainer = Trainer(model, task, config, out_dir=out)
    print(
        f"training {args.spec} ({trainer.n_params:,} params) on {task.describe()} for {config.steps} steps -> {out}",
        file=sys.stderr,
    )
    (out / "run.json").parent.mkdir(parents=True, exist_ok=True)
    (out / "run.json").write_text(
        json.dumps(
            {"spec": args.spec, "argv": sys.argv[1:], "config": config.model_dump(mode="json")},
            indent=1,
        )
    )
    result = trainer.fit(resume=args.resume)
    summary = {
        "step": result.steps,
        "final_loss": result.final_loss,
        "tokens_per_s": round(result.tokens_per_s),
        **result.eval,
    }
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m zoo.cli.train ...`` (the same as ``zoo train ...``)."""
    from zoo.errors import ZooError

    parser = argparse.ArgumentParser(prog="zoo")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except (ZooError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
