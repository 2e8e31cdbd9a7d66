"""``--schedule`` / ``--transpoints`` for the commands that run a model (generate, eval).

By default a model runs at the TransPoints it was trained with (docs/inference.md,
"TransPoints at inference"); these flags override that. A ``TransPointWarning`` prints as
one line on stderr.
"""

from __future__ import annotations

import argparse
from typing import Any

from zoo.cli._common import one_line_warnings


def add_transpoint_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--schedule",
        default=None,
        metavar="NAME_OR_JSON",
        help="run at this TransPoint schedule instead of the training TransPoints: a name (zoo list) or "
        '\'{"name": "v9", "params": {"relative": true}}\', evaluated at the training seq_len '
        "(default: the TransPoints the model was trained with)",
    )
    group.add_argument(
        "--transpoints",
        default=None,
        metavar="P,P,...",
        help="run at these absolute TransPoints, cycled over the layers "
        "(default: the TransPoints the model was trained with)",
    )


def transpoint_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``transpoints=`` / ``schedule=`` keywords of ``zoo.generate`` / ``resolve_transpoints``."""
    return {"transpoints": args.transpoints, "schedule": args.schedule}


def use_transpoint_args(model: Any, length: int, args: argparse.Namespace, command: str) -> None:
    """Make ``--schedule`` / ``--transpoints`` (when given) the TransPoints ``model`` runs at by
    default (``model.use_transpoints``), for runs of ``length`` tokens."""
    from zoo.inference.transpoints import resolve_transpoints

    if args.schedule is None and args.transpoints is None:
        return
    with one_line_warnings(command):
        model.use_transpoints(resolve_transpoints(model, length, **transpoint_options(args)))
