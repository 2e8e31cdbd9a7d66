"""Causal language model: embedding -> blocks -> final norm -> LM head.

Block: x + mixer(norm(x)), then x + mlp(norm(x)). Legend: B batch, T tokens, D d_model,
V vocab. Components arrive already built (``zoo.builder`` resolves names); forward() does
no registry look-ups.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.layers.mlp import SwiGLU
from zoo.layers.norm import make_norm
from zoo.models.cache import ModelCache
from zoo.models.pretrained import PretrainedMixin
from zoo.ops.cross_entropy import chunked_linear_cross_entropy, chunked_linear_cross_entropy_and_hits
from zoo.schedule import NoSchedule, TransPointSchedule

# Names of the last Linear of a residual branch (SSD mixers, attention, SwiGLU), the weights
# that residual-scaled inits shrink.
RESIDUAL_OUTPUTS = ("out_proj", "o_proj", "down")


class Block(nn.Module):
    def __init__(self, mixer: nn.Module, mlp: nn.Module | None, d_model: int, norm_kind: str, eps: float) -> None:
        super().__init__()
        self.mixer_norm = make_norm(norm_kind, d_model, eps)
        self.mixer = mixer
        self.mlp_norm = make_norm(norm_kind, d_model, eps) if mlp is not None else None
        self.mlp = mlp
        self.uses_transpoint = bool(getattr(type(mixer), "uses_schedule", False))

    def forward(self, x: torch.Tensor, transpoint: int | None = None) -> torch.Tensor:
        if self.uses_transpoint:
            x = x + self.mixer(self.mixer_norm(x), transpoint=transpoint)
        else:
            x = x + self.mixer(self.mixer_norm(x))
        return self._mlp_residual(x)

    def allocate_cache(
        self, batch_size: int, max_length: int, transpoint: int, dtype: torch.dtype, device: torch.device
    ):
        """The mixer's own cache (zoo.layers.state protocol); the TransPoint only for mixers that use one."""
        allocate = getattr(self.mixer, "allocate_cache", None)
        if allocate is None:
            raise ZooError(
                f"mixer {type(self.mixer).__name__} has no allocate_cache, so a model with it cannot "
                "generate with a cache; its mixer must implement zoo.layers.state.StatefulMixer"
            )
        extra = {"transpoint": transpoint} if self.uses_transpoint else {}
        return allocate(batch_size, max_length, dtype=dtype, device=device, **extra)

    def prefill(self, x: torch.Tensor, cache, start: int) -> torch.Tensor:
        return self._mlp_residual(x + self.mixer.prefill(self.mixer_norm(x), cache, start))

    def step(self, x: torch.Tensor, cache, positions: torch.Tensor, phase: str) -> torch.Tensor:
        return self._mlp_residual(x + self.mixer.step(self.mixer_norm(x), cache, positions, phase))

    def _mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mlp is None else x + self.mlp(self.mlp_norm(x))


class CausalLM(PretrainedMixin, nn.Module):
    """A causal LM over a per-layer list of blocks. ``spec`` is its validated ModelSpec."""

    def __init__(self, spec, mixers: list[nn.Module], schedule: TransPointSchedule | None) -> None:
        super().__init__()
        self.spec = spec
        d_model = spec.d_model
        self.embedding = nn.Embedding(spec.vocab_size, d_model)
        blocks = []
        for block_spec, mixer in zip(spec.layers, mixers, strict=True):
            mlp = None
            if block_spec.mlp.kind == "swiglu":
                from zoo.layers.mlp import default_d_ff

                mlp = SwiGLU(
                    d_model,
                    block_spec.mlp.d_ff or default_d_ff(d_model),
                    bias=block_spec.mlp.bias,
                    hidden=block_spec.mlp.hidden,
                )
            blocks.append(Block(mixer, mlp, d_model, spec.norm.kind, spec.norm.eps))
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = make_norm(spec.norm.kind, d_model, spec.norm.eps)
        self.lm_head = nn.Linear(d_model, spec.vocab_size, bias=False)
        if spec.tie_embeddings:
            self.lm_head.weight = self.embedding.weight
        self.schedule: TransPointSchedule = schedule if schedule is not None else NoSchedule()
        self.n_layers = len(blocks)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise the embedding, the head and every block's Linear layers by ``spec.init``
        (the mixers set their own SSM parameters: dt bias, A_log, D, conv; see docs/training.md).

        - ``gpt2``: N(0, init_std); residual outputs N(0, init_std / sqrt(2 * n_layers)).
        - ``llama`` (HF ``LlamaPreTrainedModel._init_weights``): the embedding, an untied head
          and every Linear N(0, init_std), no residual rescaling.
        - ``mamba`` (mamba_ssm ``_init_weights``): embedding N(0, init_std); Linear weights keep
          PyTorch's default (Kaiming-uniform, a = sqrt(5)); the last Linear of each residual
          branch is divided by sqrt(residual branches), i.e. sqrt(2 * n_layers) with MLPs;
          biases zero; an untied head keeps PyTorch's default, as ``MambaLMHeadModel``'s.
        """
        if self.embedding.weight.is_meta:
            return
        std, recipe = self.spec.init_std, self.spec.init
        nn.init.normal_(self.embedding.weight, std=std)
        if not self.spec.tie_embeddings:
            if recipe == "mamba":
                self.lm_head.reset_parameters()
            else:
                nn.init.normal_(self.lm_head.weight, std=std)
        branches = sum(1 + (block.mlp is not None) for block in self.blocks)
        for name, module in self.blocks.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            is_out = name.endswith(RESIDUAL_OUTPUTS)
            if recipe == "gpt2":
                nn.init.normal_(module.weight, std=std / (2 * self.n_layers) ** 0.5 if is_out else std)
            elif recipe == "llama":
                nn.init.normal_(module.weight, std=std)
            else:
                module.reset_parameters()
                if is_out:
                    module.weight.div_(branches**0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def transpoints_for(self, seq_len: int, *, step: int | None = None) -> list[int]:
        """Per-layer TransPoints the schedule gives for this length (and training step)."""
        return self.schedule.transpoints(self.n_layers, seq_len, step=step)

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        transpoints: Sequence[int] | None = None,
        targets: torch.Tensor | None = None,
        loss_reduction: Literal["mean", "sum"] = "mean",
        ignore_index: int = -100,
        count_hits: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """input_ids [B,T] -> logits [B,T,V]; with ``targets`` [B,T] -> the cross-entropy instead.

        ``transpoints`` overrides ``default_transpoints(T)`` (the training TransPoints when
        recorded, else the schedule at T) per layer.

        ``targets`` are aligned with the inputs (position t's target is the token after t; no
        shift happens here) and ``ignore_index`` marks the unscored ones. The loss, a 0-d fp32
        tensor (fp64 in an fp64 model), is ``loss_reduction`` over the scored positions: ``mean``
        (0 when none is scored) or ``sum`` (for data parallelism, which divides by the count
        over all ranks).
        It comes from ``zoo.ops.cross_entropy.chunked_linear_cross_entropy``: head and loss
        chunk by chunk, the logits [B,T,V] never formed.

        ``count_hits`` (with ``targets``, for evaluation: no gradients) returns ``(loss, hits)``,
        hits the number of scored positions whose most likely token is the target: a recall
        task's accuracy without its logits.
        """
        self._check_transpoints(transpoints, input_ids.shape[1])
        if targets is not None and targets.shape != input_ids.shape:
            raise ZooError(
                f"targets has shape {list(targets.shape)}, input_ids {list(input_ids.shape)}: "
                "give one target per input position (ignore_index where unscored)"
            )
        if count_hits and targets is None:
            raise ZooError("count_hits counts the positions whose prediction is the target: pass targets too")
        x = self.embedding(input_ids)
        if transpoints is None:
            transpoints = self.default_transpoints(input_ids.shape[1])
        for block, transpoint in zip(self.blocks, transpoints, strict=True):
            x = block(x, transpoint)
        hidden = self.final_norm(x)
        if targets is None:
            return self.lm_head(hidden)
        if count_hits:
            return chunked_linear_cross_entropy_and_hits(
                hidden, self.lm_head.weight, targets, ignore_index=ignore_index, reduction=loss_reduction
            )
        # the head's weight directly (a tied head's is the embedding's: autograd sums both uses)
        return chunked_linear_cross_entropy(
            hidden, self.lm_head.weight, targets, ignore_index=ignore_index, reduction=loss_reduction
        )

    def _check_transpoints(self, transpoints: Sequence[int] | None, seq_len: int) -> None:
        # len() of a Python list (or a tensor's static dim) is a trace-time constant: no graph break
        if transpoints is not None and len(transpoints) != self.n_layers:
            raise ZooError(
                f"transpoints has {len(transpoints)} entries; the model has {self.n_layers} layers: "
                f"give one TransPoint per layer, e.g. model.transpoints_for({seq_len})"
            )

    def allocate_cache(
        self,
        batch_size: int,
        max_length: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        *,
        transpoints: Sequence[int] | None = None,
    ) -> ModelCache:
        """Inference state for ``batch_size`` rows of up to ``max_length`` tokens: each mixer
        allocates its own cache (zoo.layers.state), the model keeps the row counts.

        P per layer is ``transpoints`` when given, else ``default_transpoints(max_length)``: the
        training TransPoints when recorded, else the schedule at ``max_length``. dtype/device
        default to the model's.
        """
        weight = self.embedding.weight
        dtype = dtype or weight.dtype
        device = torch.device(device) if device is not None else weight.device
        self._check_transpoints(transpoints, max_length)
        transpoints = list(transpoints) if transpoints is not None else self.default_transpoints(max_length)
        layers = [
            block.allocate_cache(batch_size, max_length, int(p), dtype, device)
            for block, p in zip(self.blocks, transpoints, strict=True)
        ]
        positions = torch.zeros(batch_size, dtype=torch.long, device=device)
        if positions.is_cuda:
            torch._dynamo.mark_static_address(positions)
        return ModelCache(
            layers, max_length, [0] * batch_size, positions, [min(int(p), max_length) for p in transpoints]
        )

    def prefill(self, input_ids: torch.Tensor, caches: Sequence, start: int) -> torch.Tensor:
        """input_ids [B,T] at positions start.. of every row, onto per-layer ``caches`` -> logits [B,T,V]."""
        x = self.embedding(input_ids)
        for block, cache in zip(self.blocks, caches, strict=True):
            x = block.prefill(x, cache, start)
        return self.lm_head(self.final_norm(x))

    def step(
        self, input_ids: torch.Tensor, caches: Sequence, positions: torch.Tensor, phases: Sequence[str]
    ) -> torch.Tensor:
        """One token per row: input_ids [B,1] at ``positions`` [B] -> logits [B,1,V] (static shapes)."""
        x = self.embedding(input_ids)
        for block, cache, phase in zip(self.blocks, caches, phases, strict=True):
            x = block.step(x, cache, positions, phase)
        return self.lm_head(self.final_norm(x))

    def num_parameters(self, *, exclude_embeddings: bool = False) -> int:
        total = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            total -= self.embedding.weight.numel()
        return total
