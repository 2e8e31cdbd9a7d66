"""Models: the causal LM that stacks blocks, and the registered presets."""

from zoo.models.lm import Block, CausalLM

__all__ = ["Block", "CausalLM"]
