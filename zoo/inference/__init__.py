"""Inference: prefill / decode across TransPoints, sampling, generation.

Each mixer owns its cache (``zoo.layers.state``); the model gathers them in a ``ModelCache``.

    cache = model.allocate_cache(batch_size, max_length)   # P: the training TransPoints
    logits = prefill(model, cache, input_ids)          # any length, any number of chunks
    logits = decode(model, cache, next_tokens)         # one token per row
    zoo.generate(model, input_ids, 32, temperature=0)  # all of the above

See docs/inference.md.
"""

from zoo.inference.engine import compile_prefill, compile_step, decode, prefill
from zoo.inference.generate import generate
from zoo.inference.sampling import sample
from zoo.inference.transpoints import TransPointWarning, resolve_transpoints
from zoo.models.cache import ModelCache

__all__ = [
    "ModelCache",
    "TransPointWarning",
    "compile_prefill",
    "compile_step",
    "decode",
    "generate",
    "prefill",
    "resolve_transpoints",
    "sample",
]
