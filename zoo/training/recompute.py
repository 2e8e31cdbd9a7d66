"""Selective activation checkpointing: keep what is costly to compute, recompute the rest.

A block run under this policy (``--activation-checkpointing selective``:
:func:`zoo.training.distributed.prepare_model` passes :func:`policy_context` to
``torch.utils.checkpoint``) keeps the outputs of the ops that dominate its compute
(matmuls, attention, the SSD scan and every other custom op a backend does not declare
cheap) for the backward and recomputes everything else there: norms, gates, casts, SiLU,
the causal conv, concatenations. mamba_ssm's fused Mamba kernels make the same trade for the
conv output (``checkpoint_lvl=1``); the policy is op-level selective checkpointing in the
manner of torchtitan's, for every block of any mixer. Under torch.compile the policy becomes
a tag on each node of the joint graph, and inductor's partitioner follows it.

A backend whose custom op is cheap to run again says so with ``recomputable_ops``
(``"namespace::name"`` strings, e.g. the Triton causal conv); an unknown custom op is kept.

The ``cheap`` policy (:func:`cheap_decision`) recomputes only those declared cheap ops and
leaves every aten op to the partition, as without checkpointing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

from zoo.registry import BACKEND_SLOTS, REGISTRIES

# aten ops that are the compute: their outputs are kept
_KEPT_ATEN = frozenset({"mm", "addmm", "bmm", "baddbmm", "_scaled_mm"})
_ATTENTION_MARKERS = ("scaled_dot_product", "flash_attention", "efficient_attention", "cudnn_attention")


def declared_recomputable() -> frozenset[str]:
    """Every ``recomputable_ops`` name the registered backends declare."""
    names: set[str] = set()
    for slot in BACKEND_SLOTS:
        for entry in REGISTRIES[slot].entries():
            names.update(getattr(entry.obj, "recomputable_ops", ()))
    return frozenset(names)


def _op_name(op: Any) -> str:
    return op.name() if hasattr(op, "name") else str(op)  # "aten::mm", "zoo_triton_ssd::ssd_fwd"


def keeps(op: Any, recomputable: Iterable[str]) -> bool:
    """Whether the selective policy keeps ``op``'s output (else it is recomputed)."""
    name = _op_name(op)
    namespace, _, base = name.partition("::")
    if namespace in ("aten", "prims"):
        return base in _KEPT_ATEN or any(marker in base for marker in _ATTENTION_MARKERS)
    return name not in recomputable


def selective_decision(op: Any, recomputable: Iterable[str]) -> CheckpointPolicy:
    """The ``selective`` policy: keep what :func:`keeps` keeps, recompute the rest."""
    return CheckpointPolicy.MUST_SAVE if keeps(op, recomputable) else CheckpointPolicy.PREFER_RECOMPUTE


def cheap_decision(op: Any, recomputable: Iterable[str]) -> CheckpointPolicy:
    """The ``cheap`` policy: recompute only the custom ops backends declare cheap (the Triton
    causal conv and norm); every aten op is PREFER_SAVE, which leaves it to the compiler's
    partition exactly as without checkpointing; any other custom op is kept.

    What it is for: the causal conv's outputs (x, B, C) are read by the SSD scan, the prefix
    attention and the converter, which all keep their inputs, so a step keeps them whatever the
    conv itself saves. Recomputing the conv in the backward needs the conv and its readers in
    one checkpointed region, which this policy makes of each block without changing anything
    else the compiled step keeps. Meant for compiled training: eager, the policy's cache holds
    every op output it does not recompute."""
    name = _op_name(op)
    if name in recomputable:
        return CheckpointPolicy.PREFER_RECOMPUTE
    if name.partition("::")[0] in ("aten", "prims"):
        return CheckpointPolicy.PREFER_SAVE
    return CheckpointPolicy.MUST_SAVE


def policy_context(name: str, recomputable: frozenset[str] | None = None) -> Callable[[], Any]:
    """The ``context_fn`` of :func:`torch.utils.checkpoint.checkpoint` for the ``selective`` or
    ``cheap`` policy, over the ops the registered backends declare cheap (or ``recomputable``)."""
    decision = {"selective": selective_decision, "cheap": cheap_decision}[name]
    names = declared_recomputable() if recomputable is None else recomputable

    @functools.cache
    def decide(op: Any) -> CheckpointPolicy:
        return decision(op, names)

    def policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> CheckpointPolicy:
        return decide(op)

    return functools.partial(create_selective_checkpoint_contexts, policy)
