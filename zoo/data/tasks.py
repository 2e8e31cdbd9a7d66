"""Tasks the trainer consumes: deterministic batches addressed by (step, micro-batch).

A batch is a pure function of ``(seed, step, micro)``, so resuming needs no loader
state beyond the step counter and a resumed run sees exactly the batches an
uninterrupted run would. Text is packed: the token stream of the whole split is cut into
windows of ``seq_len + 1`` tokens at random offsets, crossing document boundaries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from zoo.data.corpora import Corpus, load_corpus
from zoo.data.synthetic import (
    IGNORE,
    chance,
    check_induction,
    check_mqar,
    check_phonebook,
    check_selective_copy,
    induction_batch,
    mqar_batch,
    phonebook_batch,
    phonebook_max_entries,
    selective_copy_batch,
)
from zoo.data.tokenizer import ByteTokenizer, Tokenizer, make_tokenizer
from zoo.errors import ZooError

Batch = tuple[Tensor, Tensor]


def seeded_generator(seed: int, *parts: object) -> torch.Generator:
    """A CPU generator whose seed depends on ``seed`` and ``parts`` only (not on hash seeds)."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


class Task(Protocol):
    name: str
    metric: str  # "loss" (text) or "accuracy" (recall tasks)
    vocab_size: int
    seq_len: int

    def train_batch(self, step: int, micro: int, batch_size: int) -> Batch: ...

    def eval_batches(self, batch_size: int) -> list[Batch]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass
class TextTask:
    """Next-token prediction on a tokenized corpus."""

    train_tokens: Tensor  # [N] long
    val_tokens: Tensor  # [M] long
    seq_len: int
    tokenizer: Tokenizer
    seed: int = 0
    eval_windows: int = 64
    corpus_name: str = "?"
    name: str = "text"
    metric: str = "loss"

    def __post_init__(self) -> None:
        for split, tokens in (("train", self.train_tokens), ("validation", self.val_tokens)):
            if tokens.numel() < self.seq_len + 2:
                raise ZooError(
                    f"the {split} split of corpus {self.corpus_name!r} has {tokens.numel()} tokens, "
                    f"fewer than seq_len + 2 = {self.seq_len + 2}; use a shorter --seq-len or more text"
                )

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def _windows(self, tokens: Tensor, offsets: Tensor) -> Batch:
        index = offsets[:, None] + torch.arange(self.seq_len + 1)[None, :]
        chunk = tokens[index]
        return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()

    def train_batch(self, step: int, micro: int, batch_size: int) -> Batch:
        return self.train_shard(step, micro, batch_size, 0, 1)

    def train_shard(self, step: int, micro: int, batch_size: int, rank: int, world_size: int) -> Batch:
        """Rows ``rank * batch_size ...`` of ``train_batch(step, micro, world_size * batch_size)``,
        cutting only this rank's windows (see :func:`train_shard`)."""
        generator = seeded_generator(self.seed, "text-train", step, micro)
        high = self.train_tokens.numel() - self.seq_len - 1
        offsets = torch.randint(0, high + 1, (batch_size * world_size,), generator=generator)
        return self._windows(self.train_tokens, offsets[rank * batch_size : (rank + 1) * batch_size])

    def eval_batches(self, batch_size: int) -> list[Batch]:
        """Evenly spaced windows over the validation split (non-overlapping when it is long enough)."""
        high = self.val_tokens.numel() - self.seq_len - 1
        count = max(1, min(self.eval_windows, high // self.seq_len + 1))
        offsets = torch.linspace(0, high, count).long()
        return [self._windows(self.val_tokens, offsets[i : i + batch_size]) for i in range(0, count, batch_size)]

    def describe(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "corpus": self.corpus_name,
            "tokenizer": self.tokenizer.kind,
            "vocab_size": self.vocab_size,
            "seq_len": self.seq_len,
            "seed": self.seed,
            "train_tokens": int(self.train_tokens.numel()),
            "val_tokens": int(self.val_tokens.numel()),
        }


class TaskError(ZooError, ValueError):
    """A synthetic task's sizes do not fit together (the message names the option to change)."""


# kind -> (generator, check, the describe() name of num_items, default num_items for a seq_len)
SYNTHETIC = {
    "mqar": (mqar_batch, check_mqar, "num_kv_pairs", lambda seq_len: max(1, seq_len // 8)),
    "copy": (selective_copy_batch, check_selective_copy, "num_tokens", lambda seq_len: max(1, seq_len // 4)),
    "induction": (induction_batch, check_induction, "num_tokens", lambda seq_len: max(1, seq_len // 2)),
    "phonebook": (phonebook_batch, check_phonebook, "num_entries", lambda seq_len: phonebook_max_entries(seq_len)),
}
TASK_KINDS = ("text", *SYNTHETIC)


@dataclass
class SyntheticTask:
    """A recall task of ``zoo.data.synthetic`` (``kind``: mqar, copy, induction, phonebook),
    scored by accuracy on the recalled tokens beside its chance floor (``chance``)."""

    kind: str
    seq_len: int
    vocab_size: int
    num_items: int  # key-value pairs (mqar) or tokens to copy (copy): what evaluation asks
    seed: int = 0
    eval_examples: int = 256
    metric: str = "accuracy"
    # Training draws each sequence's item count from these (uniformly), as Zoology's MQAR
    # recipe trains on 4 to 64 pairs at once; None trains on num_items alone.
    train_items: tuple[int, ...] | None = None
    # Training draws each step's length from these (uniformly; every micro-batch and rank of a
    # step shares it) with ``seq_len // length`` times the rows, so every step holds the same
    # tokens, as Zoology's MQAR recipe trains at 64 to 256 tokens; each row's item count comes
    # from the training counts that fit that length. None trains at seq_len alone.
    train_seq_lens: tuple[int, ...] | None = None
    _eval_cache: dict[int, list[Batch]] = field(default_factory=dict, repr=False)
    _chance: float | None = field(default=None, repr=False)
    _counts_at: dict[int, tuple[int, ...]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in SYNTHETIC:
            raise ZooError(f"unknown synthetic task {self.kind!r}; choose one of {', '.join(SYNTHETIC)}")
        if error := self._misfit(self.seq_len, self.num_items):
            raise TaskError(error)
        if self.train_items is not None:
            counts = tuple(self.train_items)
            if not counts:
                raise TaskError("--train-items needs at least one item count, e.g. 4,8,16")
            if not _whole(counts):
                raise TaskError(f"--train-items takes whole item counts, e.g. 4,8,16; got {list(counts)}")
            for items in counts:
                if error := self._misfit(self.seq_len, items):
                    raise TaskError(f"--train-items {items}: {error}")
            # a mixture of num_items alone is the plain task (same batches, same description)
            self.train_items = None if counts == (self.num_items,) else counts
        if self.train_seq_lens is not None:
            self._check_train_seq_lens()

    def _misfit(self, seq_len: int, items: int) -> str | None:
        """Why ``items`` do not fit a sequence of ``seq_len`` tokens (None: they fit)."""
        try:
            SYNTHETIC[self.kind][1](seq_len, items, self.vocab_size)
        except ValueError as exc:
            return str(exc)
        return None

    def _check_train_seq_lens(self) -> None:
        lengths = tuple(self.train_seq_lens or ())
        example = ",".join(
            str(n) for n in (self.seq_len // 4, self.seq_len // 2, self.seq_len) if n >= 1 and self.seq_len % n == 0
        )  # lengths that divide seq_len
        if not lengths:
            raise TaskError(f"--train-seq-lens needs at least one length, e.g. {example}")
        if not _whole(lengths):
            raise TaskError(f"--train-seq-lens takes whole lengths, e.g. 256,512; got {list(lengths)}")
        counts = self.train_items or (self.num_items,)
        for length in lengths:
            if length < 1 or length > self.seq_len or self.seq_len % length:
                raise TaskError(
                    f"--train-seq-lens {length}: each training length must divide --seq-len {self.seq_len} "
                    f"(so every step holds the same tokens), e.g. {example}"
                )
            errors = [self._misfit(length, items) for items in counts]
            fits = [items for items, error in zip(counts, errors, strict=True) if error is None]
            if not fits:
                raise TaskError(
                    f"--train-seq-lens {length}: no training item count fits that length ({errors[-1]}); "
                    "add smaller counts with --train-items or leave that length out"
                )
            self._counts_at[length] = tuple(fits)
        # training at seq_len alone is the plain task (same batches, same description)
        self.train_seq_lens = None if set(lengths) == {self.seq_len} else lengths

    @property
    def name(self) -> str:
        return self.kind

    def _batch(
        self, batch_size: int, generator: torch.Generator, items: int | None = None, seq_len: int | None = None
    ) -> Batch:
        make = SYNTHETIC[self.kind][0]
        return make(batch_size, seq_len or self.seq_len, items or self.num_items, self.vocab_size, generator)

    def _mixed_batch(
        self, batch_size: int, generator: torch.Generator, counts: tuple[int, ...], seq_len: int | None = None
    ) -> Batch:
        """Each row's item count drawn uniformly from ``counts``; rows of one count are
        generated together and scattered to their places, so the batch is one draw of the
        generator whatever the counts."""
        length = seq_len or self.seq_len
        choice = torch.randint(len(counts), (batch_size,), generator=generator)
        inputs = torch.empty(batch_size, length, dtype=torch.long)
        targets = torch.empty(batch_size, length, dtype=torch.long)
        for index, items in enumerate(counts):
            rows = (choice == index).nonzero().flatten()
            if rows.numel():
                inputs[rows], targets[rows] = self._batch(rows.numel(), generator, items, length)
        return inputs, targets

    def step_length(self, step: int) -> int:
        """The sequence length of training step ``step``: ``seq_len``, or with ``train_seq_lens``
        one of them drawn from the step alone (every micro-batch and rank of it agree)."""
        if self.train_seq_lens is None:
            return self.seq_len
        draw = torch.randint(
            len(self.train_seq_lens), (1,), generator=seeded_generator(self.seed, self.kind, "length", step)
        )
        return self.train_seq_lens[int(draw)]

    def _eval_set(self) -> Batch:
        # The evaluation set is drawn from its own stream, disjoint in seed space from training.
        return self._batch(self.eval_examples, seeded_generator(self.seed, self.kind, "eval"))

    @property
    def chance(self) -> float:
        """The accuracy the task's best no-recall guesser is expected to score on the evaluation
        set (see ``zoo.data.synthetic``): the floor to read every accuracy against."""
        if self._chance is None:
            correct, scored = chance(self.kind, *self._eval_set(), self.num_items, self.vocab_size)
            self._chance = correct / scored
        return self._chance

    def train_batch(self, step: int, micro: int, batch_size: int) -> Batch:
        generator = seeded_generator(self.seed, self.kind, "train", step, micro)
        if self.train_seq_lens is not None:
            length = self.step_length(step)
            rows = batch_size * (self.seq_len // length)  # the tokens of batch_size rows of seq_len
            counts = self._counts_at[length]
            if len(counts) == 1:
                return self._batch(rows, generator, counts[0], length)
            return self._mixed_batch(rows, generator, counts, length)
        if self.train_items is None:
            return self._batch(batch_size, generator)
        return self._mixed_batch(batch_size, generator, self.train_items)

    def eval_batches(self, batch_size: int) -> list[Batch]:
        if batch_size not in self._eval_cache:
            inputs, targets = self._eval_set()
            self._eval_cache[batch_size] = [
                (inputs[i : i + batch_size], targets[i : i + batch_size])
                for i in range(0, self.eval_examples, batch_size)
            ]
        return self._eval_cache[batch_size]

    def describe(self) -> dict[str, Any]:
        items = SYNTHETIC[self.kind][2]
        return {
            "task": self.kind,
            "vocab_size": self.vocab_size,
            "seq_len": self.seq_len,
            items: self.num_items,
            "seed": self.seed,
            "eval_examples": self.eval_examples,
            **({} if self.train_items is None else {"train_items": list(self.train_items)}),
            **({} if self.train_seq_lens is None else {"train_seq_lens": list(self.train_seq_lens)}),
        }


def _whole(values: tuple[Any, ...]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def train_shard(task: Task, step: int, micro: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Batch:
    """Rank ``rank``'s share of a data-parallel step: rows ``[rank * r, (rank + 1) * r)`` of
    the one-process batch ``task.train_batch(step, micro, world_size * b)``, where r is that
    batch's rows over ``world_size`` (b, or a multiple of it for a step that trains shorter
    sequences: ``SyntheticTask.train_seq_lens``).

    So a run of W processes with ``batch_size`` b sees, over all ranks, exactly the batches
    of a one-process run with ``batch_size`` W * b, and the shards are disjoint. A task
    with its own ``train_shard`` method draws only its rows; any other task draws the
    whole global batch and keeps its rows (cheap next to the model's step).
    """
    if world_size == 1:
        return task.train_batch(step, micro, batch_size)
    own = getattr(task, "train_shard", None)
    if own is not None:
        return own(step, micro, batch_size, rank, world_size)
    inputs, targets = task.train_batch(step, micro, batch_size * world_size)
    share = inputs.shape[0] // world_size  # batch_size, or more rows of a shorter training length
    rows = slice(rank * share, (rank + 1) * share)
    return inputs[rows].contiguous(), targets[rows].contiguous()


def text_task(
    data: str | None = None,
    *,
    seq_len: int = 256,
    tokenizer: str | Tokenizer = "byte",
    seed: int = 0,
    eval_windows: int = 64,
) -> TextTask:
    corpus: Corpus = load_corpus(data)
    if isinstance(tokenizer, str):
        tok = ByteTokenizer() if tokenizer == "byte" else make_tokenizer(tokenizer, [corpus.train])
    else:
        tok = tokenizer

    def encode(text: str) -> Tensor:
        return torch.tensor(tok.encode(text), dtype=torch.long)

    return TextTask(
        encode(corpus.train),
        encode(corpus.validation),
        seq_len,
        tok,
        seed=seed,
        eval_windows=eval_windows,
        corpus_name=corpus.name,
    )


def make_task(
    kind: str,
    *,
    data: str | None = None,
    seq_len: int = 256,
    seed: int = 0,
    tokenizer: str | Tokenizer = "byte",
    vocab_size: int | None = None,
    num_items: int | None = None,
    eval_examples: int = 256,
    train_items: tuple[int, ...] | list[int] | None = None,
    train_seq_lens: tuple[int, ...] | list[int] | None = None,
) -> Task:
    """``text`` (``data``: corpus source) or a synthetic task (``SYNTHETIC``: mqar, copy,
    induction, phonebook; ``num_items`` defaults by ``seq_len``; ``train_items``: the item
    counts training mixes, evaluation keeps ``num_items``; ``train_seq_lens``: the lengths
    training steps draw from, each dividing ``seq_len``, evaluation keeps ``seq_len``)."""
    if kind == "text":
        for flag, value in (("--train-items", train_items), ("--train-seq-lens", train_seq_lens)):
            if value is not None:
                raise ZooError(f"{flag} is for the synthetic tasks (mqar, copy, induction, phonebook), not text")
        return text_task(data, seq_len=seq_len, tokenizer=tokenizer, seed=seed)
    if kind in SYNTHETIC:
        return SyntheticTask(
            kind,
            seq_len,
            vocab_size or 64,
            num_items or SYNTHETIC[kind][3](seq_len),
            seed=seed,
            eval_examples=eval_examples,
            train_items=None if train_items is None else tuple(train_items),
            train_seq_lens=None if train_seq_lens is None else tuple(train_seq_lens),
        )
    raise ZooError(f"unknown task {kind!r}; choose one of {', '.join(TASK_KINDS)}")


__all__ = [
    "IGNORE",
    "SYNTHETIC",
    "TASK_KINDS",
    "Batch",
    "SyntheticTask",
    "Task",
    "TextTask",
    "make_task",
    "seeded_generator",
    "text_task",
    "train_shard",
]
