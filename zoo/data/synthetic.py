"""Synthetic recall tasks and their chance floors.

Every generator returns ``(inputs, targets)``, each ``[B, T]`` long; targets are ``IGNORE``
(-100) everywhere except the positions the task scores, so the loss and the accuracy count
only the recalled tokens. Legend: B batch, T tokens, K key-value pairs, L tokens to copy,
N phone-book entries, V vocabulary.

Each task has a *chance floor*: the expected accuracy, on the very examples scored, of the
best strategy that does not recall the association the task tests (it may count tokens, know
the task's layout, and eliminate answers it has seen). An accuracy means recall only where it
is clearly above that floor. ``chance(kind, inputs, targets, items, vocab_size)`` computes it.

- ``mqar``, multi-query associative recall as in Zoology (Arora et al. 2023): K pairs
  ``k1 v1 ... kK vK`` (keys distinct in ``[1, V/2)``, values distinct in ``[V/2, V)``), then
  each key once more at an even offset drawn from a power law (``p(g) ~ g^(a-1)``, a = 0.01,
  so most queries come soon after the pairs), in a field of zeros. The value is the target
  at the query and never appears in the input after the pairs, so nothing can be eliminated:
  without the key-value binding every one of the K values is equally likely. Floor: 1/K.
- ``copy``, selective copying (Mamba, Gu & Dao 2023): L data tokens from ``[2, V)`` at random
  positions among noise tokens 0; after a separator 1 they are emitted in order (the input
  holds the tokens already emitted: teacher forcing).
- ``induction``: L random tokens from ``[2, V)``, a separator 1, then the same L tokens again,
  scored on the repeat (induction heads, Olsson et al. 2022).
- ``phonebook`` (Jelassi et al. 2024, "Repeat After Me"; the TransMamba paper's retrieval
  test): N entries ``first last d1..dD ;`` (distinct two-token names, D-digit numbers), then
  ``? first last`` of one entry and its number, whose D digits are scored.

For ``copy`` and ``induction`` the floor is that of a bag-of-tokens guesser: it knows the
multiset of the L tokens but not their order, removes each token once it has been emitted,
and guesses the most frequent remaining token: at each scored step it is right with
probability max(count)/remaining. For ``phonebook`` the guesser knows the book's numbers but
not whose they are: for digit j it keeps the numbers that agree with the j digits already
given and guesses their most frequent next digit. Both are exact expectations, not samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE = -100
NOISE, SEPARATOR, QUERY = 0, 1, 2
POWER_A = 0.01  # Zoology's power_a: the exponent of the query-gap distribution
PHONE_DIGITS = 4
DIGIT0 = 3  # digits are tokens 3..12, name tokens 13..V-1
NAME0 = DIGIT0 + 10
COUNT_BUDGET = 1 << 24  # elements of the [rows, M, V] token counts a chance computation holds at once


def _first_k_of_permutations(rows: int, n: int, k: int, generator: torch.Generator) -> Tensor:
    """``[rows, k]``: the first k entries of an independent random permutation of range(n) per row."""
    return torch.rand(rows, n, generator=generator).argsort(dim=1)[:, :k]


# ----------------------------------------------------------------------------- MQAR


def mqar_batch(
    batch_size: int, seq_len: int, num_kv_pairs: int, vocab_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    check_mqar(seq_len, num_kv_pairs, vocab_size)
    B, T, K = batch_size, seq_len, num_kv_pairs
    half = vocab_size // 2
    keys = _first_k_of_permutations(B, half - 1, K, generator) + 1
    values = _first_k_of_permutations(B, vocab_size - half, K, generator) + half
    inputs = torch.zeros(B, T, dtype=torch.long)
    inputs[:, 0 : 2 * K : 2] = keys
    inputs[:, 1 : 2 * K : 2] = values
    slots = (T - 2 * K) // 2
    weights = POWER_A * torch.arange(1, slots + 1, dtype=torch.float64) ** (POWER_A - 1)
    gaps = torch.multinomial(weights.expand(B, slots), K, replacement=False, generator=generator)
    positions = 2 * K + 2 * gaps  # key i is queried at positions[:, i]
    inputs.scatter_(1, positions, keys)
    targets = torch.full((B, T), IGNORE, dtype=torch.long)
    targets.scatter_(1, positions, values)
    return inputs, targets


def check_mqar(seq_len: int, num_kv_pairs: int, vocab_size: int) -> None:
    if num_kv_pairs < 1:
        raise ValueError(f"MQAR needs num_kv_pairs >= 1, got {num_kv_pairs}")
    if seq_len < 4 * num_kv_pairs:
        raise ValueError(
            f"MQAR with {num_kv_pairs} key-value pairs needs seq_len >= {4 * num_kv_pairs} "
            f"(pairs, then one query slot pair per key), got {seq_len}"
        )
    if vocab_size // 2 - 1 < num_kv_pairs:
        raise ValueError(
            f"MQAR with {num_kv_pairs} distinct keys needs vocab_size >= {2 * num_kv_pairs + 2}, got {vocab_size}"
        )


# ----------------------------------------------------------------------------- copying


def selective_copy_batch(
    batch_size: int, seq_len: int, num_tokens: int, vocab_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    check_selective_copy(seq_len, num_tokens, vocab_size)
    B, T, N = batch_size, seq_len, num_tokens
    context = T - N
    data = torch.randint(2, vocab_size, (B, N), generator=generator)
    positions = _first_k_of_permutations(B, context, N, generator).sort(dim=1).values
    full = torch.full((B, T + 1), NOISE, dtype=torch.long)
    full.scatter_(1, positions, data)
    full[:, context] = SEPARATOR
    full[:, context + 1 :] = data
    targets = torch.full((B, T), IGNORE, dtype=torch.long)
    targets[:, context:] = data
    return full[:, :-1].contiguous(), targets


def check_selective_copy(seq_len: int, num_tokens: int, vocab_size: int) -> None:
    if num_tokens < 1 or seq_len < 2 * num_tokens:
        raise ValueError(
            f"selective copying with {num_tokens} tokens needs num_tokens >= 1 and seq_len >= {2 * num_tokens}, "
            f"got seq_len {seq_len}"
        )
    if vocab_size < 3:
        raise ValueError(f"selective copying needs vocab_size >= 3 (noise, separator, data), got {vocab_size}")


def induction_batch(
    batch_size: int, seq_len: int, num_tokens: int, vocab_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``data SEP data`` then zeros: targets are the repeat, each predicted from the token before it."""
    check_induction(seq_len, num_tokens, vocab_size)
    B, T, L = batch_size, seq_len, num_tokens
    data = torch.randint(2, vocab_size, (B, L), generator=generator)
    full = torch.full((B, T + 1), NOISE, dtype=torch.long)
    full[:, :L] = data
    full[:, L] = SEPARATOR
    full[:, L + 1 : 2 * L + 1] = data
    targets = torch.full((B, T), IGNORE, dtype=torch.long)
    targets[:, L : 2 * L] = data
    return full[:, :-1].contiguous(), targets


def check_induction(seq_len: int, num_tokens: int, vocab_size: int) -> None:
    if num_tokens < 1 or seq_len < 2 * num_tokens:
        raise ValueError(
            f"induction with {num_tokens} tokens needs num_tokens >= 1 and seq_len >= {2 * num_tokens}, "
            f"got seq_len {seq_len}"
        )
    if vocab_size < 3:
        raise ValueError(f"induction needs vocab_size >= 3 (noise, separator, data), got {vocab_size}")


# ----------------------------------------------------------------------------- phone book


def phonebook_entry_len() -> int:
    return 2 + PHONE_DIGITS + 1  # first last d1..dD ;  (the query ? first last d1..dD has the same length)


def phonebook_batch(
    batch_size: int, seq_len: int, num_entries: int, vocab_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Zeros, N entries, then a query: the book ends exactly where the sequence does."""
    check_phonebook(seq_len, num_entries, vocab_size)
    B, T, N, D, E = batch_size, seq_len, num_entries, PHONE_DIGITS, phonebook_entry_len()
    n_names = vocab_size - NAME0
    names = _first_k_of_permutations(B, n_names * n_names, N, generator)
    first, last = names // n_names + NAME0, names % n_names + NAME0
    numbers = torch.randint(0, 10, (B, N, D), generator=generator) + DIGIT0
    book = torch.cat([first[..., None], last[..., None], numbers, torch.full((B, N, 1), SEPARATOR)], dim=2)
    asked = torch.randint(0, N, (B, 1), generator=generator)
    pick = asked[:, :, None].expand(B, 1, E)
    query = torch.cat([torch.full((B, 1), QUERY), book.gather(1, pick)[:, 0, : E - 1]], dim=1)
    full = torch.full((B, T + 1), NOISE, dtype=torch.long)
    start = T + 1 - (N + 1) * E
    full[:, start:] = torch.cat([book.reshape(B, N * E), query], dim=1)
    targets = torch.full((B, T), IGNORE, dtype=torch.long)
    targets[:, T - D :] = full[:, T + 1 - D :]
    return full[:, :-1].contiguous(), targets


def phonebook_max_entries(seq_len: int) -> int:
    return (seq_len + 1) // phonebook_entry_len() - 1


def check_phonebook(seq_len: int, num_entries: int, vocab_size: int) -> None:
    most = phonebook_max_entries(seq_len)
    if num_entries < 1 or num_entries > most:
        raise ValueError(
            f"a phone book of {num_entries} entries ({phonebook_entry_len()} tokens each, plus the query) does "
            f"not fit seq_len {seq_len}: use num_items in [1, {max(most, 1)}] or a longer --seq-len"
        )
    n_names = vocab_size - NAME0
    if n_names < 1 or n_names * n_names < num_entries:
        raise ValueError(
            f"phonebook needs vocab_size >= {NAME0 + 1} with (vocab_size - {NAME0})^2 >= {num_entries} "
            f"distinct names, got vocab_size {vocab_size}"
        )


# ----------------------------------------------------------------------------- chance floors


def bag_guess_accuracy(pool: Tensor, answer: Tensor, vocab_size: int) -> Tensor:
    """``[B, M]``: P(correct) of guessing ``answer[:, j]`` as the most frequent token of ``pool``
    [B, L] not yet emitted in ``answer[:, :j]`` (``answer`` is a reordering of ``pool``)."""
    rows = max(1, COUNT_BUDGET // max(1, answer.shape[1] * vocab_size))
    if pool.shape[0] > rows:
        chunks = range(0, pool.shape[0], rows)
        return torch.cat([bag_guess_accuracy(pool[i : i + rows], answer[i : i + rows], vocab_size) for i in chunks])
    counts = F.one_hot(pool, vocab_size).sum(1)  # [B, V]
    emitted = F.one_hot(answer, vocab_size).cumsum(1) - F.one_hot(answer, vocab_size)  # [B, M, V]
    remaining = counts[:, None, :] - emitted
    return remaining.max(-1).values.double() / remaining.sum(-1).double()


def phonebook_guess_accuracy(numbers: Tensor, answer: Tensor) -> Tensor:
    """``[B, D]``: P(correct) for digit j of guessing the most frequent digit j among the book's
    numbers ``[B, N, D]`` that agree with the first j digits of ``answer`` ``[B, D]``."""
    agree = (numbers == answer[:, None, :]).long().cumprod(-1)  # [B, N, D]: prefix 0..j matches
    candidates = torch.cat([torch.ones_like(agree[..., :1]), agree[..., :-1]], dim=-1)  # prefix 0..j-1
    digits = F.one_hot(numbers - DIGIT0, 10) * candidates[..., None]  # [B, N, D, 10]
    counts = digits.sum(1)  # [B, D, 10]
    return counts.max(-1).values.double() / counts.sum(-1).double()


def chance(kind: str, inputs: Tensor, targets: Tensor, num_items: int, vocab_size: int) -> tuple[float, int]:
    """``(expected correct, scored positions)`` of the task's no-recall guesser on these examples."""
    scored = int((targets != IGNORE).sum())
    B, T = inputs.shape
    if kind == "mqar":
        return scored / num_items, scored
    if kind == "induction":
        data = inputs[:, :num_items]
        answer = targets[:, num_items : 2 * num_items]
        return float(bag_guess_accuracy(data, answer, vocab_size).sum()), scored
    if kind == "copy":
        answer = targets[:, T - num_items :]
        return float(bag_guess_accuracy(answer, answer, vocab_size).sum()), scored
    if kind == "phonebook":
        E, D = phonebook_entry_len(), PHONE_DIGITS
        start = T + 1 - (num_items + 1) * E
        book = inputs[:, start : start + num_items * E].reshape(B, num_items, E)
        return float(phonebook_guess_accuracy(book[:, :, 2 : 2 + D], targets[:, T - D :]).sum()), scored
    raise ValueError(f"no chance floor for task {kind!r}")
