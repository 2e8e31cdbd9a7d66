"""Layers: norms, MLP, causal conv and the sequence mixers (``zoo.layers.mixers``)."""
