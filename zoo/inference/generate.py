"""``zoo.generate``: prefill the prompt, then sample one token at a time from the cache."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from zoo.inference.engine import compile_step, decode, prefill
from zoo.inference.sampling import GenerationError, check_generation_args, sample
from zoo.inference.transpoints import ScheduleLike


@torch.no_grad()
def generate(
    model,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    eos_id: int | None = None,
    lengths: Sequence[int] | None = None,
    compile: bool = False,
    compile_mode: str | None = None,
    prefill_chunk_size: int | None = None,
    on_token: Callable[[list[int]], None] | None = None,
    allow_large: bool = False,
    transpoints: Sequence[int] | str | None = None,
    schedule: ScheduleLike | None = None,
) -> torch.Tensor:
    """input_ids [B,T] (right-padded when ``lengths`` is given) -> new tokens [B, max_new_tokens].

    Greedy when ``temperature`` is 0. After a row emits ``eos_id`` it keeps emitting
    ``eos_id``; generation stops early when every row has. ``on_token`` receives each
    step's tokens (host list) as they come. The cache holds ``max(lengths) + max_new_tokens``
    positions; ``allow_large`` allocates it even when it exceeds the device's free memory.

    TransPoints: the model's training TransPoints when it has them (a prompt shorter than a
    layer's P stays in attention there and decoding crosses P as training did), else its
    schedule at the cache's length. ``transpoints`` (one P per layer) or ``schedule`` (a name,
    ``{"name", "params"}`` or an instance) overrides that, with a ``TransPointWarning`` when
    it differs from the training TransPoints (``zoo.inference.transpoints``).
    """
    if isinstance(input_ids, (str, bytes)):
        raise GenerationError(
            f"zoo.generate got a {type(input_ids).__name__} prompt; it takes token ids: pass "
            "torch.tensor([tokenizer.encode(text)]) with the model's tokenizer "
            "(zoo.data.ByteTokenizer() for a preset, zoo.checkpoint.load_tokenizer(path) for a checkpoint), "
            "or run `zoo generate MODEL --prompt TEXT`"
        )
    chosen = check_generation_args(
        model,
        input_ids,
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        eos_id=eos_id,
        lengths=lengths,
        allow_large=allow_large,
        transpoints=transpoints,
        schedule=schedule,
    )
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    batch, seq_len = input_ids.shape
    lengths = [seq_len] * batch if lengths is None else [int(n) for n in lengths]
    device = model.embedding.weight.device
    input_ids = input_ids.to(device)
    max_length = max(lengths) + max_new_tokens
    cache = model.allocate_cache(batch, max_length, transpoints=chosen)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    step_fn = compile_step(model, mode=compile_mode) if compile else None
    logits = prefill(model, cache, input_ids, lengths=lengths, chunk_size=prefill_chunk_size)
    out = torch.full((batch, max_new_tokens), eos_id if eos_id is not None else 0, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    read_each_step = on_token is not None or eos_id is not None
    for index in range(max_new_tokens):
        tokens = sample(logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
        if eos_id is not None:
            tokens = torch.where(finished, torch.full_like(tokens, eos_id), tokens)
            finished |= tokens == eos_id
        out[:, index] = tokens
        if read_each_step:
            host_tokens = tokens.tolist()  # the one host sync of the loop: reading sampled tokens
            if on_token is not None:
                on_token(host_tokens)
            if eos_id is not None and all(t == eos_id for t in host_tokens):
                break
        if index + 1 < max_new_tokens:
            logits = decode(model, cache, tokens, step_fn)
            if step_fn is not None:
                logits = logits.clone()  # CUDA-graph outputs are overwritten by the next replay
    return out
