"""``--schedule`` / ``--transpoints`` for the commands that run a model (generate, eval).

By default a model runs at the TransPoints it was trained with (docs/inference.md,
"TransPoints at inference"); these flags override that. A ``TransPointWarning`` prints as
one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


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


@contextmanager
def one_line_warnings(command: str, *, speak: bool = True) -> Iterator[None]:
    """Show warnings raised inside as ``zoo COMMAND: warning: MESSAGE`` (one line, stderr),
    each message once however often it is raised (a comparison builds a model per run); with
    ``speak`` False (a rank other than 0 of a distributed job) drop them."""
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if speak and str(message) not in shown:
            shown.add(str(message))
            print(f"zoo {command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def use_transpoint_args(model: Any, length: int, args: argparse.Namespace, command: str) -> None:
    """Make ``--schedule`` / ``--transpoints`` (when given) the TransPoints ``model`` runs at by
    default (``model.use_transpoints``), for runs of ``length`` tokens."""
    from zoo.inference.transpoints import resolve_transpoints

    if args.schedule is None and args.transpoints is None:
        return
    with one_line_warnings(command):
        model.use_transpoints(resolve_transpoints(model, length, **transpoint_options(args)))
