"""Inference: typed caches, prefill / decode across TransPoints, sampling, generation.

    cache = model.allocate_cache(batch_size, max_length)
    logits = prefill(model, cache, input_ids)          # any length, any number of chunks
    logits = decode(model, cache, next_tokens)         # one token per row
    zoo.generate(model, input_ids, 32, temperature=0)  # all of the above

See docs/inference.md.
"""

from zoo.inference.cache import AttentionCache, ModelCache, SSMCache, TransMambaCache
from zoo.inference.engine import compile_prefill, compile_step, decode, prefill
from zoo.inference.generate import generate
from zoo.inference.sampling import sample

__all__ = ["AttentionCache", "ModelCache", "SSMCache", "TransMambaCache", "compile_prefill", "compile_step",
           "decode", "generate", "prefill", "sample"]
