"""Recall tasks: deterministic in (seed, step), and a chance floor that a no-recall guesser,
written here from the inputs alone, actually scores (within sampling error)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from zoo.data.synthetic import IGNORE, PHONE_DIGITS, phonebook_entry_len
from zoo.data.tasks import SYNTHETIC, TASK_KINDS, TaskError, make_task
from zoo.errors import ZooError

SIZES = {"mqar": (64, 64, 8), "copy": (48, 16, 12), "induction": (48, 16, 24), "phonebook": (96, 40, 12)}


def _task(kind: str, seed: int = 0, examples: int = 64):
    seq_len, vocab, items = SIZES[kind]
    return make_task(kind, seq_len=seq_len, vocab_size=vocab, num_items=items, seed=seed, eval_examples=examples)


@pytest.mark.parametrize("kind", list(SYNTHETIC))
def test_batches_are_a_function_of_seed_step_and_micro(kind: str) -> None:
    task, other_seed = _task(kind), _task(kind, seed=1)
    x, y = task.train_batch(5, 1, 4)
    assert torch.equal(x, task.train_batch(5, 1, 4)[0]) and torch.equal(y, task.train_batch(5, 1, 4)[1])
    assert not torch.equal(x, task.train_batch(6, 1, 4)[0])
    assert not torch.equal(x, task.train_batch(5, 0, 4)[0])
    assert not torch.equal(x, other_seed.train_batch(5, 1, 4)[0])
    assert task.chance == _task(kind).chance  # the floor is computed on the same evaluation set
    assert x.shape == y.shape == (4, task.seq_len) and int((y != IGNORE).sum()) > 0


def _guess_mqar(inputs: list[int], targets: list[int], rng: random.Random, vocab: int, items: int) -> list[bool]:
    """The old elimination trick: guess among the context's values not yet seen after it."""
    context = inputs[: 2 * items]
    hits = []
    for pos, target in enumerate(targets):
        if target == IGNORE:
            continue
        seen_later = set(inputs[2 * items : pos + 1])
        values = [v for v in context if v >= vocab // 2]
        candidates = [v for v in values if v not in seen_later] or values
        hits.append(rng.choice(candidates) == target)
    return hits


def _guess_bag(pool: list[int], answer: list[int], rng: random.Random) -> list[bool]:
    """Most frequent token of the pool not yet emitted (random tie-break)."""
    remaining = {t: pool.count(t) for t in set(pool)}
    hits = []
    for target in answer:
        best = max(remaining.values())
        hits.append(rng.choice(sorted(t for t, c in remaining.items() if c == best)) == target)
        remaining[target] -= 1
    return hits


def _guess_phonebook(inputs: list[int], targets: list[int], rng: random.Random, items: int) -> list[bool]:
    """Knows the book's numbers, not whose they are: keeps the numbers that agree so far."""
    entry, T = phonebook_entry_len(), len(inputs)
    start = T + 1 - (items + 1) * entry
    numbers = [inputs[start + e * entry + 2 : start + e * entry + 2 + PHONE_DIGITS] for e in range(items)]
    answer = targets[T - PHONE_DIGITS :]
    hits = []
    for j, digit in enumerate(answer):
        candidates = [n for n in numbers if n[:j] == answer[:j]]
        counts = {d: sum(n[j] == d for n in candidates) for d in {n[j] for n in candidates}}
        best = max(counts.values())
        hits.append(rng.choice(sorted(d for d, c in counts.items() if c == best)) == digit)
    return hits


def _guesser_hits(kind: str, task, inputs: torch.Tensor, targets: torch.Tensor) -> list[bool]:
    rng, hits = random.Random(0), []
    T, items = task.seq_len, task.num_items
    for row_in, row_t in zip(inputs.tolist(), targets.tolist(), strict=True):
        if kind == "mqar":
            hits += _guess_mqar(row_in, row_t, rng, task.vocab_size, items)
        elif kind == "induction":
            hits += _guess_bag(row_in[:items], row_t[items : 2 * items], rng)
        elif kind == "copy":
            data = [t for t in row_in[: T - items] if t >= 2]
            hits += _guess_bag(data, row_t[T - items :], rng)
        else:
            hits += _guess_phonebook(row_in, row_t, rng, items)
    return hits


@pytest.mark.parametrize("kind", list(SYNTHETIC))
def test_a_no_recall_guesser_scores_the_chance_floor(kind: str) -> None:
    task = _task(kind, examples=1500)
    inputs, targets = task._eval_set()
    hits = _guesser_hits(kind, task, inputs, targets)
    assert len(hits) == int((targets != IGNORE).sum())
    score, floor = sum(hits) / len(hits), task.chance
    # Positions within a row are correlated; 5 binomial sigmas of the row count is loose enough.
    sigma = math.sqrt(floor * (1 - floor) / inputs.shape[0])
    assert abs(score - floor) < 5 * sigma, f"{kind}: guesser {score:.4f}, chance floor {floor:.4f}"
    if kind == "mqar":
        assert floor == pytest.approx(1 / task.num_items)
    if kind in ("copy", "induction"):  # counting tokens beats 1/alphabet: the floor says so
        assert floor > 1.5 / (task.vocab_size - 2)


def test_mqar_values_never_reappear_after_the_pairs() -> None:
    task = _task("mqar", examples=32)
    inputs, targets = task._eval_set()
    K, half = task.num_items, task.vocab_size // 2
    assert bool((inputs[:, 2 * K :] < half).all())  # only keys and zeros after the pairs
    keys, values = inputs[:, 0 : 2 * K : 2], inputs[:, 1 : 2 * K : 2]
    for row_in, row_t, k, v in zip(inputs, targets, keys, values, strict=True):
        binding = dict(zip(k.tolist(), v.tolist(), strict=True))
        scored = (row_t != IGNORE).nonzero()[:, 0]
        assert sorted(row_in[scored].tolist()) == sorted(binding)
        assert all(binding[int(row_in[p])] == int(row_t[p]) for p in scored)
        assert len(set(v.tolist())) == K


def test_phonebook_scores_the_queried_number() -> None:
    task = _task("phonebook", examples=8)
    inputs, targets = task._eval_set()
    entry, T = phonebook_entry_len(), task.seq_len
    start = T + 1 - (task.num_items + 1) * entry
    for row_in, row_t in zip(inputs.tolist(), targets.tolist(), strict=True):
        entries = [row_in[start + e * entry : start + (e + 1) * entry] for e in range(task.num_items)]
        book = {tuple(e[:2]): e[2:-1] for e in entries}
        assert len(book) == task.num_items  # names are distinct
        query = tuple(row_in[T - PHONE_DIGITS - 1 : T - PHONE_DIGITS + 1])  # ? first last d1..d(D-1)
        assert row_t[T - PHONE_DIGITS :] == book[query]
        assert set(row_t[: T - PHONE_DIGITS]) == {IGNORE}


def test_sizes_that_do_not_fit_name_the_option() -> None:
    with pytest.raises(TaskError, match="num_items"):
        make_task("phonebook", seq_len=20, num_items=5)
    with pytest.raises(TaskError, match="seq_len"):
        make_task("induction", seq_len=10, num_items=6)


def test_the_cli_offers_every_task() -> None:
    import argparse

    from zoo.cli._task_args import add_task_args

    parser = argparse.ArgumentParser()
    add_task_args(parser)
    action = next(a for a in parser._actions if a.dest == "task")
    assert tuple(action.choices) == TASK_KINDS


def test_evaluation_reports_the_chance_floor(standin) -> None:
    from zoo.training.trainer import TrainConfig, Trainer

    task = _task("induction", examples=16)
    config = TrainConfig(steps=1, batch_size=4, compile=False, progress=False, device="cpu")
    metrics = Trainer(standin(vocab_size=task.vocab_size), task, config).evaluate()
    assert metrics["eval_chance"] == task.chance and 0 <= metrics["eval_accuracy"] <= 1


@pytest.mark.parametrize("kind", list(SYNTHETIC))
def test_a_checkpoints_task_description_rebuilds_the_task(kind: str) -> None:
    from zoo.training.runs import task_from_description

    task = _task(kind, seed=4, examples=16)
    rebuilt = task_from_description(task.describe())
    assert (rebuilt.kind, rebuilt.num_items, rebuilt.seq_len, rebuilt.vocab_size, rebuilt.seed) == (
        kind, task.num_items, task.seq_len, task.vocab_size, 4,
    )  # fmt: skip
    assert rebuilt.chance == task.chance


def test_the_bag_guesser_is_computed_in_chunks_alike(monkeypatch) -> None:
    import zoo.data.synthetic as synthetic

    task = _task("induction", examples=40)
    inputs, targets = task._eval_set()
    whole = synthetic.chance("induction", inputs, targets, task.num_items, task.vocab_size)
    monkeypatch.setattr(synthetic, "COUNT_BUDGET", task.num_items * task.vocab_size * 3)  # 3 rows at a time
    assert synthetic.chance("induction", inputs, targets, task.num_items, task.vocab_size)[0] == pytest.approx(whole[0])


@pytest.mark.parametrize("kind", list(SYNTHETIC))
def test_a_training_mixture_draws_each_sequence_s_item_count_and_evaluation_keeps_num_items(kind: str) -> None:
    seq_len, vocab, items = SIZES[kind]
    mix = (2, items)
    task = make_task(kind, seq_len=seq_len, vocab_size=vocab, num_items=items, train_items=mix, eval_examples=32)
    plain = _task(kind, examples=32)
    x, y = task.train_batch(3, 0, 64)
    again = task.train_batch(3, 0, 64)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])

    def signature(inputs: torch.Tensor) -> set[int]:  # tokens that are not filler, per row: grows with the count
        return set((inputs != 0).sum(dim=1).tolist())

    one = [make_task(kind, seq_len=seq_len, vocab_size=vocab, num_items=k).train_batch(0, 0, 8)[0] for k in mix]
    per_count = [signature(t) for t in one]
    assert not per_count[0] & per_count[1]
    rows = signature(x)
    assert rows & per_count[0] and rows & per_count[1]  # both counts appear in 64 rows
    assert rows <= per_count[0] | per_count[1]
    evaluation = torch.cat([inputs for inputs, _ in task.eval_batches(32)])
    assert signature(evaluation) <= per_count[1]  # the evaluation set asks num_items only
    assert task.chance == plain.chance
    assert task.describe()["train_items"] == list(mix) and "train_items" not in plain.describe()


def test_a_training_mixture_that_does_not_fit_names_the_flag_and_text_refuses_it() -> None:
    with pytest.raises(TaskError, match=r"--train-items 40: MQAR with 40 key-value pairs needs seq_len >= 160"):
        make_task("mqar", seq_len=64, vocab_size=256, num_items=8, train_items=[4, 40])
    with pytest.raises(TaskError, match="at least one"):
        make_task("mqar", seq_len=64, vocab_size=64, num_items=8, train_items=[])
    with pytest.raises(ZooError, match="not text"):
        make_task("text", data="builtin:topics", train_items=[4])


def test_a_checkpoint_s_task_description_rebuilds_the_mixture() -> None:
    from zoo.training.runs import task_from_description

    task = make_task("mqar", seq_len=64, vocab_size=64, num_items=8, train_items=[2, 4, 8], seed=5)
    again = task_from_description(task.describe())
    assert again.describe() == task.describe()
    assert torch.equal(again.train_batch(1, 0, 16)[0], task.train_batch(1, 0, 16)[0])


def test_evaluating_a_mixture_checkpoint_at_another_length_asks_num_items_alone() -> None:
    from zoo.training.runs import task_from_description

    task = make_task("mqar", seq_len=256, vocab_size=256, num_items=8, train_items=[4, 64])
    shorter = task_from_description(task.describe(), seq_len=128)  # 64 pairs do not fit in 128 tokens
    assert shorter.seq_len == 128 and shorter.num_items == 8 and shorter.train_items is None
    assert task_from_description(task.describe()).train_items == (4, 64)


def test_a_mixture_of_the_scored_count_alone_is_the_plain_task_and_counts_must_be_whole() -> None:
    plain = make_task("mqar", seq_len=64, vocab_size=64, num_items=8)
    one = make_task("mqar", seq_len=64, vocab_size=64, num_items=8, train_items=[8])
    assert one.describe() == plain.describe()
    assert torch.equal(one.train_batch(2, 0, 8)[0], plain.train_batch(2, 0, 8)[0])
    with pytest.raises(TaskError, match="whole item counts"):
        make_task("mqar", seq_len=64, vocab_size=64, num_items=8, train_items=[4.0])


def test_data_parallel_shards_of_a_mixture_are_the_one_process_batch() -> None:
    from zoo.data.tasks import train_shard

    task = make_task("mqar", seq_len=64, vocab_size=64, num_items=8, train_items=[2, 4, 8])
    whole = task.train_batch(7, 1, 12)
    shards = [train_shard(task, 7, 1, 4, rank, 3) for rank in range(3)]
    assert torch.equal(torch.cat([x for x, _ in shards]), whole[0])
    assert torch.equal(torch.cat([y for _, y in shards]), whole[1])


def test_training_lengths_keep_the_tokens_of_a_step_and_evaluation_keeps_seq_len() -> None:
    task = make_task(
        "mqar", seq_len=256, vocab_size=256, num_items=16, train_items=[4, 16, 32], train_seq_lens=[64, 256]
    )
    plain = make_task("mqar", seq_len=256, vocab_size=256, num_items=16, eval_examples=256)
    seen: dict[int, set[int]] = {}
    for step in range(24):
        x, y = task.train_batch(step, 0, 8)
        length = task.step_length(step)
        assert x.shape == y.shape == (8 * 256 // length, length)  # 2,048 tokens every step
        again = task.train_batch(step, 1, 8)  # another micro-batch of the step: the same length
        assert again[0].shape == x.shape and not torch.equal(again[0], x)
        scored = (y != IGNORE).sum(dim=1)
        seen.setdefault(length, set()).update(scored.tolist())
    assert set(seen) == {64, 256}  # both lengths drawn in 24 steps
    assert seen[64] <= {4, 16}  # 32 pairs need 128 tokens: not at 64
    assert seen[256] <= {4, 16, 32} and 32 in seen[256]
    evaluation = task.eval_batches(32)
    assert all(x.shape[1] == 256 for x, _ in evaluation)
    assert task.chance == plain.chance
    assert task.describe()["train_seq_lens"] == [64, 256] and "train_seq_lens" not in plain.describe()


def test_training_lengths_that_do_not_fit_name_the_flag() -> None:
    with pytest.raises(TaskError, match=r"--train-seq-lens 96: each training length must divide --seq-len 256"):
        make_task("mqar", seq_len=256, vocab_size=256, num_items=16, train_seq_lens=[96, 256])
    with pytest.raises(TaskError, match=r"--train-seq-lens 512: each training length must divide"):
        make_task("mqar", seq_len=256, vocab_size=256, num_items=16, train_seq_lens=[512])
    with pytest.raises(TaskError, match=r"--train-seq-lens 32: no training item count fits.*--train-items"):
        make_task("mqar", seq_len=256, vocab_size=256, num_items=16, train_seq_lens=[32, 256])
    with pytest.raises(TaskError, match="at least one length"):
        make_task("mqar", seq_len=256, vocab_size=256, num_items=16, train_seq_lens=[])
    with pytest.raises(ZooError, match="--train-seq-lens is for the synthetic tasks"):
        make_task("text", data="builtin:topics", train_seq_lens=[128])


def test_training_at_seq_len_alone_is_the_plain_task() -> None:
    plain = make_task("mqar", seq_len=64, vocab_size=64, num_items=8)
    one = make_task("mqar", seq_len=64, vocab_size=64, num_items=8, train_seq_lens=[64])
    assert one.describe() == plain.describe() and one.train_seq_lens is None
    assert torch.equal(one.train_batch(2, 0, 8)[0], plain.train_batch(2, 0, 8)[0])


def test_data_parallel_shards_of_shorter_steps_are_the_one_process_batch() -> None:
    from zoo.data.tasks import train_shard
    from zoo.training.runs import task_from_description

    task = make_task("mqar", seq_len=128, vocab_size=64, num_items=8, train_items=[2, 8], train_seq_lens=[32, 128])
    for step in range(6):
        whole = task.train_batch(step, 0, 6)
        shards = [train_shard(task, step, 0, 2, rank, 3) for rank in range(3)]
        assert torch.equal(torch.cat([x for x, _ in shards]), whole[0])
        assert torch.equal(torch.cat([y for _, y in shards]), whole[1])
    again = task_from_description(task.describe())  # a checkpoint's record rebuilds the lengths
    assert again.train_seq_lens == (32, 128)
    assert torch.equal(again.train_batch(3, 0, 4)[0], task.train_batch(3, 0, 4)[0])


def test_a_training_length_listed_twice_is_drawn_twice_as_often() -> None:
    task = make_task("mqar", seq_len=128, vocab_size=64, num_items=8, train_seq_lens=[32, 128, 128])
    lengths = [task.step_length(step) for step in range(600)]
    assert 0.58 < lengths.count(128) / len(lengths) < 0.75  # 2/3 expected; 600 draws: sd ~0.019
