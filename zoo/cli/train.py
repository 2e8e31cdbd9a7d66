"""``zoo train SPEC|PRESET``: train a model on a corpus or a synthetic recall task."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

from zoo.cli._run_dir import check_run_dir
from zoo.cli._task_args import add_task_args, task_from_args
from zoo.errors import ZooError
from zoo.training.config import TrainConfig

HELP = "train a model (preset or spec file) on text or a synthetic recall task"


def add_backend_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--backend SLOT=NAME``, repeatable (parsed by ``zoo.overrides.parse_backend_overrides``)."""
    parser.add_argument(
        "--backend",
        action="append",
        default=[],
        metavar="SLOT=NAME[:KEY=VALUE,...]",
        help="run every layer that has backend slot SLOT (attention, ssm, converter, conv, norm) on backend "
        "NAME, with its params after a colon, e.g. --backend ssm=triton on a GPU, ssm=triton:states=recompute, "
        "or ssm=chunked for a triton-trained checkpoint on a CPU; repeatable (zoo list shows the backends)",
    )


def add_recompute_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--mlp-hidden`` and ``--ssd-gate``: the spec's training-memory opt-ins, for every layer
    (``zoo.overrides.spec_with_recompute``); default None keeps the spec's own."""
    parser.add_argument(
        "--mlp-hidden",
        choices=("save", "recompute"),
        default=None,
        help="SwiGLU's hidden silu(gate) * up kept from the forward (save) or formed again in the backward "
        "(recompute: less memory, a little slower); default: the spec's own (the presets: save)",
    )
    parser.add_argument(
        "--ssd-gate",
        choices=("save", "recompute"),
        default=None,
        help="the SSD mixers' (mamba2, transmamba) gate z kept from in_proj (save) or formed again in the "
        "backward from in_proj's input (recompute: less memory); default: the spec's own (the presets: save)",
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
    group.add_argument(
        "--loss",
        choices=("logits", "chunked"),
        default="logits",
        help="logits (default): cross-entropy of the model's logits; chunked: the model computes the loss "
        "chunk by chunk without the [batch, T, vocab] logits (docs/training.md)",
    )
    add_backend_arg(group)
    add_recompute_args(group)


def config_from_args(args: argparse.Namespace, **overrides: Any) -> TrainConfig:
    if args.clip < 0:  # the flag maps 0 to None (no clipping), so TrainConfig's "> 0" would mislead
        raise ZooError(f"--clip {args.clip}: must be > 0, or 0 to turn clipping off")
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
        "loss": args.loss,
    }
    values.update(overrides)
    return make_train_config(values)


def make_train_config(values: dict[str, Any]) -> TrainConfig:
    """``TrainConfig(**values)``; a refusal is one line naming each command-line flag."""
    from pydantic import ValidationError

    from zoo.cli._common import config_error

    try:
        return TrainConfig(**values)
    except ValidationError as exc:  # one line naming the flag, not pydantic's report
        flags = {"warmup_steps": "warmup", "grad_clip": "clip", "save_every": "save-every", "keep_last": "keep"}
        raise config_error(exc, values, flags) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help=HELP, description=HELP)
    parser.add_argument("spec", nargs="?", default=None, help="preset name (e.g. transmamba-tiny) or a spec JSON file")
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="run config (TOML, YAML or JSON): model, [task], [train]; flags given here override it "
        "(a run records its resolved config as OUT/config.json)",
    )
    add_task_args(parser)
    add_training_args(parser)
    group = parser.add_argument_group("output")
    group.add_argument("--out", default=None, help="run directory (default runs/<spec name>)")
    group.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    group.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in an --out that holds an earlier run's checkpoints, deleting them and its metrics "
        "(without it, such an --out is refused)",
    )
    group.add_argument("--save-every", type=int, default=0, help="checkpoint every N steps (0: at the end)")
    group.add_argument("--keep", type=int, default=3, help="checkpoints to keep (default 3)")
    add_distributed_args(parser)
    parser.set_defaults(func=run, dir_flags=("out",))
    record_explicit_flags(parser)  # last: a config file yields only to the flags actually given


def add_distributed_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("processes (docs/training.md, Multi-GPU)")
    group.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="start N data-parallel processes through torchrun (FSDP2); --batch-size is per process",
    )
    group.add_argument(
        "--activation-checkpointing",
        default="none",
        metavar="none|full|selective|cheap|K",
        help="recompute activations in backward: none (default), full (every block), selective (every block "
        "keeps its matmul, attention and SSD outputs and recomputes the rest), cheap (compiled training: every "
        "block recomputes only the ops its backends declare cheap, e.g. the Triton conv) or full on every K-th block",
    )
    group.add_argument(
        "--dist-timeout",
        type=float,
        default=600.0,
        help="seconds a process waits for the others in a collective before it gives up (default 600)",
    )


def run(args: argparse.Namespace) -> int:
    from zoo.training import distributed
    from zoo.training.runs import run_lock

    launch = getattr(args, "nproc", None) is not None and not distributed.launched_by_torchrun()
    if launch and args.nproc < 1:
        raise ZooError(f"--nproc {args.nproc}: needs at least 1 process")
    args.config_train = apply_config_file(args) if args.config else {}
    if args.config:  # the file's values get the checks the flags got before it was read
        from zoo.cli._common import check_common_flags

        check_common_flags(args)
    if args.spec is None:
        raise ZooError("name a model (a preset or a spec file), or give --config FILE with a model key")
    out = Path(args.out or Path("runs") / _model_label(args.spec))
    # every refusal about --out before any process starts; it only reads the directory
    config = run_config(args)
    finished = check_run_dir(args, out, config)
    if finished is not None:  # a job resubmitted with --resume after it ended: nothing to do
        print(f"note: {out} is already at step {finished} (--steps); nothing to train", file=sys.stderr)
        return 0
    if launch:
        argv = sys.argv[1:]
        argv = argv[1:] if argv[:1] == ["train"] else argv  # zoo train ... or python -m zoo.cli.train ...
        distributed.exec_torchrun(args.nproc, ["train", *distributed.strip_nproc(argv)])
    with distributed.process_group(args.device, getattr(args, "dist_timeout", 600.0)):
        with run_lock(out):  # before reading or writing anything in it: one writer per run directory
            return _train(args, out, config)


def _train(args: argparse.Namespace, out: Path, config: TrainConfig) -> int:
    from zoo import checkpoint as ckpt
    from zoo.cli._common import one_line_warnings
    from zoo.overrides import parse_backend_overrides
    from zoo.training import distributed
    from zoo.training.distributed import current, describe_batch, is_main_process
    from zoo.training.runs import build_for_task
    from zoo.training.trainer import Trainer, resolve_device

    tokenizer = None
    ref: Any = args.spec
    latest = ckpt.latest_checkpoint(out)  # run() checked it; every rank reads it before rank 0 writes
    distributed.barrier()
    if args.resume and latest is not None:
        checkpoint = ckpt.open_checkpoint(latest, verify=False)
        tokenizer = ckpt.load_tokenizer(latest)  # a BPE must not be retrained differently
        if checkpoint.spec is not None:  # the architecture and backends it was trained with; --backend wins
            ref = checkpoint.spec
    elif args.resume and is_main_process():
        print(f"note: {out} holds no checkpoint to resume; starting a new run", file=sys.stderr)
    task = task_from_args(args, tokenizer)
    import torch

    torch.manual_seed(config.seed)
    with one_line_warnings("train", speak=is_main_process()):
        model = build_for_task(
            ref,
            task,
            device=resolve_device(config.device),
            backends=parse_backend_overrides(args.backend),
            mlp_hidden=args.mlp_hidden,
            ssd_gate=args.ssd_gate,
        )
    trainer = Trainer(model, task, config, out_dir=out)
    if not is_main_process():  # rank 0 speaks and writes for the job
        trainer.fit(resume=args.resume, overwrite=args.overwrite)
        return 0
    print(
        f"training {args.spec if isinstance(args.spec, str) else _model_label(args.spec)} "
        f"({trainer.n_params:,} params) on {task.describe()} for {config.steps} steps -> {out}"
        f"; {describe_batch(config.batch_size, config.grad_accum, current())}",
        file=sys.stderr,
    )
    (out / "run.json").parent.mkdir(parents=True, exist_ok=True)
    record_config(args, out, config)
    (out / "run.json").write_text(
        json.dumps(
            {"spec": args.spec, "argv": sys.argv[1:], "config": config.model_dump(mode="json")},
            indent=1,
        )
    )
    result = trainer.fit(resume=args.resume, overwrite=args.overwrite)
    summary = {
        "step": result.steps,
        "final_loss": result.final_loss,
        "tokens_per_s": round(result.tokens_per_s),
        **result.eval,
    }
    print(json.dumps(summary))
    return 0


def run_config(args: argparse.Namespace) -> TrainConfig:
    """The run's TrainConfig from its flags and its config file's ``[train]`` table."""
    config = config_from_args(
        args,
        **{
            "save_every": args.save_every,
            "keep_last": args.keep,
            "activation_checkpointing": getattr(args, "activation_checkpointing", "none"),
            "dist_timeout": getattr(args, "dist_timeout", 600.0),
            **getattr(args, "config_train", {}),
        },
    )
    if config.warmup_steps > config.steps:
        raise ZooError(
            f"--warmup {config.warmup_steps}: longer than --steps {config.steps}, so the learning rate never reaches "
            "--lr; give at most --steps"
        )
    return config


# ------------------------------------------------------------ run config files (--config)

# TrainConfig field -> the flag (argparse dest) that sets it, where the names differ
TRAIN_FIELD_FLAGS = {
    "warmup_steps": "warmup",
    "grad_clip": "clip",
    "compile": "no_compile",
    "compile_eval": "eager_eval",
    "progress": "no_progress",
    "keep_last": "keep",
}


@functools.cache
def _recording(action_class: type[argparse.Action]) -> type[argparse.Action]:
    class Recording(action_class):  # type: ignore[misc, valid-type]
        def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
            namespace.explicit_flags = getattr(namespace, "explicit_flags", frozenset()) | {self.dest}
            super().__call__(parser, namespace, values, option_string)

    return Recording


def record_explicit_flags(parser: argparse.ArgumentParser) -> None:
    """Record in ``args.explicit_flags`` the dests of the options given on the command line.

    A default cannot tell "not given" from "given its default value" (``--steps 1000``), and
    only a flag actually given may override the config file."""
    for action in parser._actions:
        if action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            action.__class__ = _recording(type(action))
    parser.set_defaults(explicit_flags=frozenset())


def apply_config_file(args: argparse.Namespace) -> dict[str, Any]:
    """Fill ``args`` from ``args.config`` where no flag was given; return the file's ``[train]``
    values to pass on to :func:`config_from_args` (flags given override them)."""
    from zoo.training.config_file import load_run_file

    run_file = load_run_file(args.config)
    explicit = getattr(args, "explicit_flags", frozenset())
    if args.spec is None:
        args.spec = run_file.model
    if run_file.out is not None and "out" not in explicit:
        args.out = run_file.out
    if run_file.backend and "backend" not in explicit:
        args.backend = [f"{slot}={name}" for slot, name in run_file.backend.items()]
    for key, value in run_file.task.items():
        dest = "task" if key == "name" else key
        if dest not in explicit:
            setattr(args, dest, value)
    train = {k: v for k, v in run_file.train.items() if TRAIN_FIELD_FLAGS.get(k, k) not in explicit}
    if "steps" in train and "warmup_steps" not in run_file.train and "warmup" not in explicit:
        train["warmup_steps"] = max(1, train["steps"] // 20)  # the flags' default: 5% of the steps
    return train


def _model_label(model: str | dict[str, Any]) -> str:
    if isinstance(model, dict):
        return str(model.get("name") or "model")
    return Path(model).stem


def record_config(args: argparse.Namespace, out: Path, config: TrainConfig) -> Path:
    """Write ``out/config.json``: the run's model, task and TrainConfig as resolved, so that
    ``zoo train --config out/config.json`` repeats it. A spec file is copied in inline (the
    record must not change when the file does); a preset stays a name."""
    from zoo.overrides import parse_backend_overrides, spec_with_recompute
    from zoo.training.config_file import resolved_config, write_resolved
    from zoo.training.runs import resolve_spec

    model = args.spec
    if isinstance(model, str) and Path(model).is_file():
        model = resolve_spec(model)
    if args.mlp_hidden is not None or args.ssd_gate is not None:  # the spec as trained, inline
        model = spec_with_recompute(resolve_spec(model), mlp_hidden=args.mlp_hidden, ssd_gate=args.ssd_gate)
    task = {
        "name": args.task,
        "data": args.data,
        "tokenizer": args.tokenizer,
        "seq_len": args.seq_len,
        "vocab": args.vocab,
        "num_items": args.num_items,
        "train_items": args.train_items,
        "train_seq_lens": args.train_seq_lens,
    }
    backend = parse_backend_overrides(args.backend)
    return write_resolved(out, resolved_config(model=model, out=out, backend=backend, task=task, train=config))


def main(argv: list[str] | None = None) -> int:
    """``python -m zoo.cli.train ...`` (the same as ``zoo train ...``)."""
    from zoo.cli import one_line_parser
    from zoo.cli._common import check_common_flags
    from zoo.errors import ZooError

    parser = one_line_parser(prog="zoo")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        check_common_flags(args)  # --device, --tokenizer: one line, as under `zoo train`
        return args.func(args)
    except (ZooError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
