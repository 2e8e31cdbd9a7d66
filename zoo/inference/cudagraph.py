"""Decode step captured as CUDA graphs, one per tuple of layer phases.

``torch.compile(mode="reduce-overhead")`` (see ``engine.compile_step``) is the compiled
route; this is the plain one: the eager step recorded once per phase tuple and replayed.
Phases only move forward (attention -> mixed -> SSM), so a graph whose phase tuple has
passed is dropped, and with it any reference to released prefix buffers.
"""

from __future__ import annotations

import torch

from zoo.models.cache import ModelCache


class GraphedStep:
    """Callable like ``model.step``; tokens/positions are copied into static inputs."""

    def __init__(self, model, cache: ModelCache, *, warmup: int = 2) -> None:
        self.model, self.cache, self.warmup = model, cache, warmup
        self.tokens = torch.zeros(cache.batch_size, 1, dtype=torch.long, device=cache.positions.device)
        self.graphs: dict[tuple[str, ...], tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.pool = None

    def _capture(self, phases: tuple[str, ...]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        cache = self.cache
        # warm-up and capture mutate the cache: run them on a snapshot, then restore it
        saved = [
            [t.clone() if isinstance(t, torch.Tensor) else t for t in vars(layer).values()] for layer in cache.layers
        ]
        saved_positions = cache.positions.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                self.model.step(self.tokens, cache.layers, cache.positions, phases)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            logits = self.model.step(self.tokens, cache.layers, cache.positions, phases)
        self.pool = graph.pool()
        for layer, values in zip(cache.layers, saved, strict=True):
            for current, value in zip(list(vars(layer).values()), values, strict=True):
                if isinstance(current, torch.Tensor):
                    current.copy_(value)
        cache.positions.copy_(saved_positions)
        return graph, logits

    def __call__(self, input_ids: torch.Tensor, caches, positions: torch.Tensor, phases) -> torch.Tensor:
        phases = tuple(phases)
        if phases not in self.graphs:
            self.graphs.clear()  # earlier phase tuples never come back
            self.graphs[phases] = self._capture(phases)
        graph, logits = self.graphs[phases]
        self.tokens.copy_(input_ids)
        graph.replay()
        return logits
