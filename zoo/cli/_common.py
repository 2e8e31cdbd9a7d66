"""What every sub-command shares: flags checked before any work, readable flag errors, help text.

``check_common_flags`` runs in ``zoo.cli.main`` for every sub-command, so a flag that
several commands take (``--device``, ``--tokenizer``) is checked in one place, before a
model is built or a corpus read, and its mistake is one line naming the flag and the fix.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from zoo.errors import ZooError

_TOKENIZER = re.compile(r"byte|bpe(:[0-9]+)?")


def check_common_flags(args: argparse.Namespace) -> None:
    """Raise ZooError for a ``--device`` this machine lacks, a malformed ``--tokenizer``, a
    ``--seq-len`` below 1, or a directory flag (the command's ``dir_flags`` default: ``out``,
    ``storage``) that names an existing file."""
    seq_len = getattr(args, "seq_len", None)
    if isinstance(seq_len, int) and seq_len < 1:
        raise ZooError(f"--seq-len {seq_len}: must be >= 1")
    for dest in getattr(args, "dir_flags", ()):
        value = getattr(args, dest, None)
        if isinstance(value, str) and os.path.exists(value) and not os.path.isdir(value):
            flag = "--" + dest.replace("_", "-")
            raise ZooError(f"{flag} {value}: is a file, not a directory; choose another {flag}")
    device = getattr(args, "device", None)
    if isinstance(device, str):
        from zoo.devices import parse_device

        parse_device(device, flag="--device")
    tokenizer = getattr(args, "tokenizer", None)
    if isinstance(tokenizer, str):
        check_tokenizer_flag(tokenizer)


def check_tokenizer_flag(value: str) -> None:
    """``byte``, ``bpe`` or ``bpe:VOCAB`` with VOCAB a positive integer."""
    if not _TOKENIZER.fullmatch(value) or value.startswith("bpe:") and int(value[4:]) < 1:
        raise ZooError(
            f"--tokenizer {value[:80]!r}: expected byte, bpe or bpe:VOCAB with VOCAB a positive integer (e.g. bpe:4096)"
        )


# pydantic's error types -> how a flag's bound reads on the command line
_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
_TYPES = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text",
}


def flag_problem(error: dict[str, Any]) -> str:
    """One pydantic error (``exc.errors()`` item) as a short phrase: ``must be >= 1``."""
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()), "?")
        return f"must be {_BOUNDS[kind]} {bound}"
    if kind in _TYPES:
        return f"must be {_TYPES[kind]}"
    if kind == "literal_error" and "expected" in ctx:
        return f"must be one of {ctx['expected']}"
    # anything else: pydantic's sentence, in the same voice ("Input should be X" -> "must be X")
    return str(error.get("msg", "invalid")).removeprefix("Value error, ").replace("Input should be", "must be")


def config_error(exc: Any, values: dict[str, Any], flags: dict[str, str] | None = None) -> ZooError:
    """A pydantic ``ValidationError`` of a config built from flags, as one line naming each flag."""
    flags = flags or {}
    problems = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error.get("loc") else "?"
        flag = "--" + flags.get(field, field).replace("_", "-")
        problems.append(f"{flag} {values.get(field)!r}: {flag_problem(error)}")
    return ZooError("; ".join(problems))


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Append ``(default: X)`` to each option's help that has a default worth showing and no
    mention of one yet (argparse's ArgumentDefaultsHelpFormatter would also print
    ``default: None`` and ``False``, and repeat the defaults some helps already spell out)."""
    for action in parser._actions:
        default = action.default
        # identity, not ==: a default of 0 (--seed 0) is worth showing, False (a switch) is not
        if action.help == argparse.SUPPRESS or default is None or default is False or default == argparse.SUPPRESS:
            continue
        if isinstance(default, (list, tuple)) and not default:
            continue
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        if action.help and "default" in action.help.lower():
            continue
        shown = "%(default)s" if not isinstance(default, (list, tuple)) else " ".join(map(str, default))
        action.help = f"{action.help} (default: {shown})" if action.help else f"default: {shown}"


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
