"""Synthetic recall tasks: MQAR and selective copying.

Both return ``(inputs, targets)``, each ``[B, T]`` long; targets are ``IGNORE`` (-100)
everywhere except the positions the task scores, so the loss and the accuracy count only
the recalled tokens.

MQAR (multi-query associative recall; Zoology, Arora et al. 2023, and Based): the sequence
opens with ``num_kv_pairs`` key-value pairs ``k1 v1 k2 v2 ...``; later every key appears
again, followed by its value, at random even offsets in a field of zeros; the model must
predict the value after each repeated key. Keys come from ``[1, V/2)`` without repeats,
values from ``[V/2, V)``. Query positions are uniform here (Zoology draws the gaps from a
power law); that is a choice of this zoo.

Selective copying (Mamba, Gu & Dao 2023): ``num_tokens`` data tokens from ``[2, V)`` sit at
random positions in a field of noise tokens 0; after a separator 1 the model must emit
them in order.
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE = -100
NOISE, SEPARATOR = 0, 1


def _first_k_of_permutations(rows: int, n: int, k: int, generator: torch.Generator) -> Tensor:
    """``[rows, k]``: the first k entries of an independent random permutation of range(n) per row."""
    return torch.rand(rows, n, generator=generator).argsort(dim=1)[:, :k]


def mqar_batch(
    batch_size: int, seq_len: int, num_kv_pairs: int, vocab_size: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    check_mqar(seq_len, num_kv_pairs, vocab_size)
    B, T, K = batch_size, seq_len, num_kv_pairs
    half = vocab_size // 2
    keys = _first_k_of_permutations(B, half - 1, K, generator) + 1
    values = torch.randint(half, vocab_size, (B, K), generator=generator)
    full = torch.zeros(B, T + 1, dtype=torch.long)
    full[:, 0 : 2 * K : 2] = keys
    full[:, 1 : 2 * K : 2] = values
    n_slots = (T + 1 - 2 * K) // 2
    positions = 2 * K + 2 * _first_k_of_permutations(B, n_slots, K, generator)
    order = _first_k_of_permutations(B, K, K, generator)
    query_keys, query_values = keys.gather(1, order), values.gather(1, order)
    full.scatter_(1, positions, query_keys)
    full.scatter_(1, positions + 1, query_values)
    targets = torch.full((B, T), IGNORE, dtype=torch.long)
    targets.scatter_(1, positions, query_values)
    return full[:, :-1].contiguous(), targets


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
