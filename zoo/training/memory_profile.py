"""Where a compiled training step's memory goes, found without running it.

``profile_training_memory(model, batch=, seq_len=)`` traces one step of ``model`` the way
``zoo.build(compile=True)`` compiles it (dynamo, fullgraph, inductor's decompositions, graph
passes and min-cut partition into a forward and a backward graph) and stops before any code is
generated. The forward graph's extra outputs are what the step keeps for the backward; each is
sized from its fake tensor and attributed to the module and op that made it. Nothing runs on
the device and no activation is allocated, so a 400m model at 32K tokens per step profiles on
a CPU (30-60 s per model on two cores).

What it counts, per step:

- ``saved``: tensors the compiled forward keeps for the backward, by site (module path with the
  block index folded to ``*``, and the op). Views share their base's storage and count once;
  tensors the graph received (weights, token ids) count nothing (they exist anyway).
- ``loss``: with ``loss="logits"``, the logits and what an eager fp32 cross-entropy over them
  keeps (the trainer's and the throughput benchmark's step); with ``"chunked"`` the loss is
  inside the graph and its saved tensors are among ``saved``.
- ``weights``, ``grads``, ``optimizer``: fp32 parameters, their gradients and AdamW's two
  moments.

The partition is the one inductor makes for the device the model is traced on (the CPU here:
autocast's CPU op lists; a GPU run's lists differ in a few pointwise ops). Custom ops (the
Triton plugin's) count by their registered fake kernels, which is exactly what they allocate.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ops whose output aliases their first argument's storage (a saved view costs its base once)
_VIEW_OPS = {
    "view",
    "_unsafe_view",
    "permute",
    "t",
    "transpose",
    "expand",
    "slice",
    "select",
    "unsqueeze",
    "squeeze",
    "alias",
    "as_strided",
    "reshape",
    "unflatten",
    "split",
    "split_with_sizes",
}


@dataclasses.dataclass(frozen=True)
class SavedSite:
    """Tensors one site keeps for the backward, summed over the blocks that have it."""

    where: str  # module path, block index folded: "blocks.*.mixer.ssd.in_proj"
    op: str  # the op that made it: "aten.mm", "zoo_triton_ssd.ssd_fwd[2]"
    count: int
    nbytes: int
    shape: tuple[int, ...]  # of one of them
    dtype: str


@dataclasses.dataclass(frozen=True)
class TrainingMemory:
    """One training step's memory by component (bytes); see the module notes."""

    batch: int
    seq_len: int
    loss_path: str
    n_params: int
    saved: tuple[SavedSite, ...]
    loss_bytes: int

    @property
    def saved_bytes(self) -> int:
        return sum(site.nbytes for site in self.saved)

    @property
    def state_bytes(self) -> int:
        """fp32 weights, gradients and AdamW's two moments: 16 bytes per parameter."""
        return 16 * self.n_params

    @property
    def total_bytes(self) -> int:
        """Saved activations + loss + weights, gradients and optimizer state: a floor for the
        step's peak (the backward's transient buffers come on top)."""
        return self.saved_bytes + self.loss_bytes + self.state_bytes

    def by_group(self, patterns: dict[str, str]) -> dict[str, int]:
        """Saved bytes summed into named groups: the first regex (searched in ``where op``)
        that matches decides; the rest is ``other``."""
        groups: dict[str, int] = defaultdict(int)
        for site in self.saved:
            text = f"{site.where} {site.op}"
            name = next((group for group, pattern in patterns.items() if re.search(pattern, text)), "other")
            groups[name] += site.nbytes
        return dict(groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "seq_len": self.seq_len,
            "loss_path": self.loss_path,
            "n_params": self.n_params,
            "saved_bytes": self.saved_bytes,
            "loss_bytes": self.loss_bytes,
            "state_bytes": self.state_bytes,
            "total_bytes": self.total_bytes,
            "saved": [dataclasses.asdict(site) for site in self.saved],
        }


class _Stop(Exception):
    """Raised from the code-generation hook: the graphs are what we came for."""


def _is_view(node: torch.fx.Node) -> bool:
    if node.op != "call_function" or not node.args or not isinstance(node.args[0], torch.fx.Node):
        return False
    if node.target is operator.getitem:  # one piece of a split: a view of the split's input
        return _is_view(node.args[0])
    return _op_name(node).split(".")[-1] in _VIEW_OPS


def _base(node: torch.fx.Node) -> torch.fx.Node:
    """The node whose storage ``node`` views (itself when it is no view)."""
    while _is_view(node):
        node = node.args[0]
    return node


def _op_name(node: torch.fx.Node) -> str:
    target = node.target
    if target is operator.getitem:
        source = node.args[0]
        inner = _op_name(source) if isinstance(source, torch.fx.Node) else "?"
        return f"{inner}[{node.args[1]}]"
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._schema.name.split('::')[-1]}"  # "aten.mm", no overload
    return getattr(target, "__name__", str(target))


def _where(node: torch.fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "-"
    path = list(stack.values())[-1][0]
    path = re.sub(r"^L\['\w+'\]\.?", "", path)  # dynamo's name of the traced function's module
    path = re.sub(r"\._modules\['(\w+)'\]", r".\1", path)
    path = path.replace(".forward.args[0]", "")  # a block run through a checkpoint wrapper
    return re.sub(r"\.\d+(?=\.|$)", ".*", path) or "model"


def _nbytes(value: Tensor) -> int:
    """A fresh tensor's bytes (its extent: a base is never a view, see ``_base``)."""
    return value.numel() * value.element_size()


def saved_sites(forward_graph: torch.fx.GraphModule, n_outputs: int) -> tuple[SavedSite, ...]:
    """The forward graph's outputs past its first ``n_outputs`` (the step's own outputs), as
    sites; placeholders (the graph's inputs) and repeated bases count nothing."""
    output = next(node for node in forward_graph.graph.nodes if node.op == "output")
    outputs = output.args[0]
    seen: set[torch.fx.Node] = set()
    sums: dict[tuple[str, str, int, str], list] = {}
    for node in outputs[n_outputs:]:
        if not isinstance(node, torch.fx.Node) or not isinstance(node.meta.get("val"), Tensor):
            continue  # symbolic sizes and None
        base = _base(node)
        if base.op == "placeholder" or base in seen:
            continue
        seen.add(base)
        value = base.meta.get("val")
        if not isinstance(value, Tensor):
            value = node.meta["val"]
        nbytes = _nbytes(value)
        if nbytes == 0:  # an empty placeholder output (e.g. states a kernel did not save)
            continue
        dtype = str(value.dtype).removeprefix("torch.")
        # rank and dtype keep a linear's weight cast and its input's cast apart
        key = (_where(base), _op_name(base), value.dim(), dtype)
        entry = sums.setdefault(key, [0, 0, tuple(value.shape), dtype])
        entry[0] += 1
        entry[1] += nbytes
    sites = [
        SavedSite(where, op, count, nbytes, shape, dtype)
        for (where, op, _, _), (count, nbytes, shape, dtype) in sums.items()
    ]
    return tuple(sorted(sites, key=lambda site: -site.nbytes))


def forward_graph(fn, *args: Any) -> tuple[torch.fx.GraphModule, int]:
    """The partitioned forward graph inductor would generate code for when ``fn(*args)`` is
    compiled (fullgraph) with autograd, and how many of its outputs the step returns (the
    rest are saved for the backward); nothing is generated or run. Resets dynamo before and
    after (``torch._dynamo.reset()``: compiled code elsewhere in the process recompiles)."""
    from torch._guards import TracingContext
    from torch._inductor.compile_fx import compile_fx

    graphs: list[tuple[torch.fx.GraphModule, int]] = []

    def record(graph: torch.fx.GraphModule, example_inputs: Any, **kwargs: Any) -> Any:
        if kwargs.get("is_inference"):
            raise RuntimeError("the traced step needs no backward: do the parameters require grad?")
        context = TracingContext.try_get()
        metadata = getattr(context, "fw_metadata", None)
        # outputs, mutated inputs and intermediate bases come first; then the saved values
        returns = getattr(metadata, "num_forward_returns", None)
        graphs.append((graph, 1 if returns is None else int(returns)))
        raise _Stop

    def backend(graph: torch.fx.GraphModule, example_inputs: Any) -> Any:
        return compile_fx(graph, example_inputs, inner_compile=record)

    torch._dynamo.reset()
    compiled = torch.compile(fn, backend=backend, fullgraph=True)
    try:
        compiled(*args)
    except Exception as exc:  # dynamo wraps the hook's _Stop in BackendCompilerFailed
        if not graphs:
            raise
        del exc
    finally:
        torch._dynamo.reset()
    return graphs[0]


def _eager_loss_bytes(logits: Tensor) -> int:
    """Bytes an eager fp32 cross-entropy over ``logits`` keeps until the backward: the logits
    and the floating-point tensors autograd saves, each once (traced on fake tensors: nothing
    is allocated; the targets are the step's data and count nothing)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    saved: list[Tensor] = []

    def pack(tensor: Tensor) -> Tensor:
        if tensor.is_floating_point() and not any(tensor is other for other in saved):
            saved.append(tensor)
        return tensor

    with FakeTensorMode():
        fake = torch.empty(logits.shape, dtype=logits.dtype, requires_grad=True)
        targets = torch.zeros(logits.shape[:-1], dtype=torch.long)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            F.cross_entropy(fake.float().flatten(0, 1), targets.flatten())
        kept = sum(tensor.numel() * tensor.element_size() for tensor in saved)
    return logits.numel() * logits.element_size() + kept


def profile_training_memory(
    model: nn.Module,
    *,
    batch: int,
    seq_len: int,
    loss: str = "logits",
    autocast: torch.dtype | None = torch.bfloat16,
    transpoints: list[int] | None = None,
) -> TrainingMemory:
    """Trace one training step of ``model`` (a ``CausalLM``, not compiled) at ``batch x
    seq_len`` tokens and size what it keeps; see the module notes. ``loss``: ``logits`` (an eager
    cross-entropy over the compiled forward's logits) or ``chunked`` (the model's own loss).
    """
    if loss not in ("logits", "chunked"):
        raise ValueError(f"loss must be 'logits' or 'chunked', got {loss!r}")
    device = next(model.parameters()).device
    ids = torch.zeros(batch, seq_len, dtype=torch.long, device=device)
    vocab = model.spec.vocab_size
    kwargs: dict[str, Any] = {} if transpoints is None else {"transpoints": transpoints}

    def step(input_ids: Tensor) -> Tensor:
        with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            if loss == "chunked":
                return model(input_ids, targets=input_ids, **kwargs)
            return model(input_ids, **kwargs)

    graph, n_returns = forward_graph(step, ids)
    first = next(node for node in graph.graph.nodes if node.op == "output").args[0][0]
    out_value = first.meta["val"]
    expected = (batch, seq_len, vocab) if loss == "logits" else ()
    if tuple(out_value.shape) != expected:
        raise RuntimeError(f"the traced step's first output has shape {tuple(out_value.shape)}, expected {expected}")
    n_params = sum(parameter.numel() for parameter in model.parameters())
    loss_bytes = _eager_loss_bytes(out_value) if loss == "logits" else 0
    return TrainingMemory(batch, seq_len, loss, n_params, saved_sites(graph, n_returns), loss_bytes)
