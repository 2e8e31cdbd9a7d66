"""The ``zoo`` command. Sub-commands are modules of this package that define ``register``.

Every module ``zoo/cli/<name>.py`` with ``register(subparsers)`` (which adds its parser and
``set_defaults(func=run)``) becomes a sub-command. User-facing errors (``ZooError``,
``ValueError``) print as one readable message with exit code 2, no traceback;
``ZOO_DEBUG=1`` shows the traceback. Flags that several sub-commands share (``--device``,
``--tokenizer``) are checked here before the sub-command runs (``zoo.cli._common``); every
sub-command's ``--help`` shows its defaults, and ``zoo --help`` one line per sub-command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from typing import Any, NoReturn

from zoo.cli._common import check_common_flags, show_defaults
from zoo.errors import ZooError


class _CommandsFormatter(argparse.HelpFormatter):
    """Sub-command names in one column and each summary beside its name: argparse measures
    the names without their extra indent, so a long one (bench-decode) pushed its summary
    to the next line."""

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        if isinstance(action, argparse._SubParsersAction):
            longest = max((len(name) for name in action.choices), default=0)
            self._action_max_length = max(self._action_max_length, longest + self._current_indent + 4)


class _OneLineParser(argparse.ArgumentParser):
    """A flag argparse itself refuses is one line too, pointing at ``--help`` (argparse's
    default prints the whole usage block, 20 lines for ``zoo train``, above the line that matters)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def one_line_parser(**kwargs: Any) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` (and its sub-command parsers) whose own refusals are one line."""
    return _OneLineParser(**kwargs)


def make_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="zoo",
        description="TransMamba model zoo: build, plan, train, generate, bench.",
        formatter_class=_CommandsFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_OneLineParser)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    for choice in sub._choices_actions:
        # the listing shows the help's first clause; the sub-command's own --help shows all of it
        full = choice.help or ""
        choice.help = full.split("; ")[0]
        subparser = sub.choices[choice.dest]
        subparser.description = subparser.description or full
        show_defaults(subparser)
    return parser


def _version() -> str:
    from zoo import __version__

    return f"zoo {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    args.argv = [*(sys.argv[1:] if argv is None else argv)]  # what a run records (zoo.cli.list shadows list)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        check_common_flags(args)
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `zoo list | head`: the reader left; nothing to report
        # stdout's buffer still holds text: point it at devnull so the flush at exit is silent
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ZooError, ValueError, KeyError, FileNotFoundError, ImportError, RuntimeError) as exc:
        if os.environ.get("ZOO_DEBUG") or not (
            isinstance(exc, (ZooError, ValueError, KeyError, FileNotFoundError, ImportError))
        ):
            raise
        print(f"zoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
