"""``zoo export RUN_OR_CHECKPOINT OUT``: a sharded (multi-process) checkpoint as a single-file one."""

from __future__ import annotations

import argparse
import sys

HELP = "convert a sharded checkpoint (written by a multi-process run) into the single-file form"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help=HELP, description=HELP)
    parser.add_argument("source", help="a sharded checkpoint directory, or a run directory (its latest checkpoint)")
    parser.add_argument("out", help="run directory to write (OUT/checkpoints/step-N); zoo.load and zoo eval read it")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zoo.training.dist_checkpoint import export

    path = export(args.source, args.out)
    print(f"wrote {path}", file=sys.stderr)
    return 0
