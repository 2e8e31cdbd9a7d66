"""The data flags that ``zoo train`` and ``zoo compare`` share (``--task``, ``--data``,
``--seq-len``, ``--num-items``, ``--train-items`` ...) and the task they describe."""

from __future__ import annotations

import argparse
from typing import Any


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
        help="text corpus: builtin (default), builtin:topics, builtin:stdlib, builtin:pylib (11 MB), a file, a "
        "directory or a glob",
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
    group.add_argument(
        "--train-items",
        type=item_counts,
        default=None,
        metavar="N,N,...",
        help="synthetic tasks: train on a mixture of item counts, each sequence's drawn uniformly (e.g. "
        "4,8,16,32,64, as Zoology trains MQAR); evaluation keeps --num-items (default: train on --num-items)",
    )
    group.add_argument(
        "--train-seq-lens",
        type=lengths,
        default=None,
        metavar="T,T,...",
        help="synthetic tasks: each training step draws its length from these, uniformly (each dividing --seq-len; a "
        "shorter step has proportionally more rows, so every step holds the same tokens; each row's item count "
        "from the training counts that fit), as Zoology trains MQAR at 64 to 256 tokens; evaluation keeps "
        "--seq-len (default: train at --seq-len)",
    )


def positive_ints(what: str, example: str) -> Any:
    """An argparse ``type``: ``"4,8,16"`` -> ``[4, 8, 16]`` (order and repeats kept); anything
    else is one argparse error line naming ``what`` with ``example``."""

    def parse(text: str) -> list[int]:
        values = [part.strip() for part in text.split(",")]
        if not all(v.isdigit() and int(v) > 0 for v in values):
            raise argparse.ArgumentTypeError(f"{text!r} is not a list of positive {what} (e.g. {example})")
        return [int(v) for v in values]

    return parse


item_counts = positive_ints("item counts", "4,8,16")
lengths = positive_ints("sequence lengths", "256,512")


def task_from_args(args: argparse.Namespace, tokenizer: Any = None) -> Any:
    from zoo.data.tasks import TaskError, make_task
    from zoo.errors import ZooError

    if args.num_items is not None and args.num_items < 1:
        raise ZooError(f"--num-items {args.num_items}: must be >= 1 (or leave it out for the task's default)")
    if args.vocab < 2:
        raise ZooError(f"--vocab {args.vocab}: must be >= 2")

    try:
        return make_task(
            args.task,
            data=args.data,
            seq_len=args.seq_len,
            seed=args.seed,
            tokenizer=tokenizer if tokenizer is not None else args.tokenizer,
            vocab_size=args.vocab,
            num_items=args.num_items,
            train_items=args.train_items,
            train_seq_lens=args.train_seq_lens,
        )
    except TaskError as exc:  # a synthetic task's sizes speak of make_task's fields; the user typed flags
        raise TaskError(in_flag_words(str(exc))) from exc


# make_task's keywords, as the flags that set them
_FLAG_WORDS = {"vocab_size": "--vocab", "seq_len": "--seq-len", "num_items": "--num-items", "num_tokens": "--num-items"}


def in_flag_words(message: str) -> str:
    """A task's message with make_task's field names replaced by the flags that set them."""
    import re

    return re.sub(r"\b(" + "|".join(_FLAG_WORDS) + r")\b", lambda m: _FLAG_WORDS[m.group(1)], message)
